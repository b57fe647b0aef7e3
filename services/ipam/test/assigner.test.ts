// Block assignment scenarios over the in-memory KV: set 0, grow and its idempotence, replicas
// racing, exhaustion, unacknowledged writes, rebuilding from held reports, legacy keys, GC.
import { IpamKey } from '@dyad/contracts';
import { FAMILIES } from '@dyad/netaddr';
import type { NodeBlockValue } from '@dyad/contracts';
import { describe, expect, it } from 'vitest';
import { AssignError } from '../src/assigner.ts';
import { blockList } from '../src/record.ts';
import type { NodeRecord } from '../src/record.ts';
import { FakeKv } from './fake-kv.ts';
import type { World } from './fake-replica.ts';
import { DUAL, fakeReplica, world } from './fake-replica.ts';

function setup(raw: Readonly<Record<string, string>> = DUAL, live: string[] = ['n1', 'n2']) {
  const kv = new FakeKv();
  const w = world(kv, raw);
  for (const n of live) w.nodes.set(n, 'live');
  return { kv, w };
}

function record(kv: FakeKv, node: string): NodeRecord | undefined {
  return kv.json(IpamKey.node(node)) as NodeRecord | undefined;
}

/** Live block claims, as `family cidr → node`. */
function claims(kv: FakeKv): Map<string, string> {
  return new Map(
    kv.liveKeys(IpamKey.blockFilter).map((k) => [k, (kv.json(k) as { node: string }).node]),
  );
}

function cidrs(r: NodeRecord | undefined): string[] {
  return r === undefined ? [] : blockList(r, FAMILIES).map((b) => b.cidr);
}

const code = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'ok',
    (e: unknown) => (e instanceof AssignError ? e.code : String(e)),
  );

const turns = async (n: number): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
};

describe('set 0 on announcement', () => {
  it('gives one block per family, once, however often and on however many replicas it is announced', async () => {
    const { kv, w } = setup();
    const [a, b] = [fakeReplica(w), fakeReplica(w)];
    // Writes land in random-ish order: each waits a few turns.
    let i = 0;
    kv.fault.holdWrite = () => turns(i++ % 4);
    await Promise.all([
      a.assigner.announce('n1'),
      b.assigner.announce('n1'),
      a.assigner.announce('n1'),
    ]);
    const r = record(kv, 'n1');
    expect(r?.sets).toHaveLength(1);
    expect(blockList(r as NodeRecord, FAMILIES).map((b) => b.family)).toEqual(['IPv4', 'IPv6']);
    expect(r?.sets[0]?.IPv4?.gateway).toMatch(/^198\.18\.\d+\.1$/);
    // The losing replica's claims were withdrawn: two claims, both the record's.
    expect([...claims(kv).values()]).toEqual(['n1', 'n1']);
    expect(claims(kv).size).toBe(2);
    const writes = kv.writes;
    await a.assigner.announce('n1');
    expect(kv.writes).toBe(writes);
    expect(a.assigned.length + b.assigned.length).toBe(1);
  });

  it('completes every set with a family enabled after the node got its sets', async () => {
    const { kv, w } = setup();
    await kv.asKv().put(
      IpamKey.node('n1'),
      new TextEncoder().encode(
        JSON.stringify({
          v: 1,
          name: 'n1',
          uid: 'uid-n1',
          blocks: { IPv6: { cidr: 'fd00:d1ad::500/120', gateway: 'fd00:d1ad::501' } },
          createdAt: 1,
        }),
      ),
    );
    const a = fakeReplica(w);
    const r = await a.assigner.announce('n1');
    expect(r?.v).toBe(2);
    expect(r?.sets).toEqual([
      {
        IPv6: { cidr: 'fd00:d1ad::500/120', gateway: 'fd00:d1ad::501' },
        IPv4: { cidr: '198.18.0.0/24', gateway: '198.18.0.1' },
      },
    ]);
  });
});

describe('grow', () => {
  it('adds a set only when the node holds no more sets than the agent says; a repeat answers the same', async () => {
    const { kv, w } = setup();
    const [a, b] = [fakeReplica(w), fakeReplica(w)];
    await a.assigner.announce('n1');
    const first = await a.assigner.grow('n1', 1);
    expect(first.added).toBe(true);
    expect(first.record.sets).toHaveLength(2);
    // The same request again (its reply was lost), on either replica: no third set.
    for (const r of [a, b]) {
      const again = await r.assigner.grow('n1', 1);
      expect(again.added).toBe(false);
      expect(cidrs(again.record)).toEqual(cidrs(first.record));
    }
    // An agent that knows 2 sets asks again, racing itself on both replicas: one set more.
    const [x, y] = await Promise.all([a.assigner.grow('n1', 2), b.assigner.grow('n1', 2)]);
    expect(x.record.sets).toHaveLength(3);
    expect(cidrs(y.record)).toEqual(cidrs(x.record));
    expect([x.added, y.added].sort()).toEqual([false, true]);
    expect(cidrs(record(kv, 'n1'))).toEqual(cidrs(x.record));
    expect(claims(kv).size).toBe(6);
    // Sets keep their blocks: the first two sets are those the first grow named.
    expect(cidrs(x.record).slice(0, 4)).toEqual(cidrs(first.record));
  });

  it('refuses a deleted or never announced node; a live node without blocks waits for its set 0', async () => {
    const { kv, w } = setup();
    w.nodes.set('gone', 'deleted');
    const a = fakeReplica(w);
    expect(await code(a.assigner.grow('gone', 1))).toBe('unknown-node');
    expect(await code(a.assigner.grow('stranger', 1))).toBe('unknown-node');
    // Its agent cannot hold sets ipam never gave (nor reported): nothing is made up for it.
    expect(await code(a.assigner.grow('n2', 1))).toBe('unavailable');
    expect(claims(kv).size).toBe(0);
    await a.assigner.announce('n2');
    expect((await a.assigner.grow('n2', 1)).record.sets).toHaveLength(2);
  });

  it("exhaustion of one family's pool leaves nothing claimed and says which family and pool", async () => {
    // Two IPv4 /25 blocks, many IPv6 ones: IPv4 runs out first.
    const { kv, w } = setup({
      ...DUAL,
      'cluster-pool-ipv4-cidr': '198.18.0.0/24',
      'cluster-pool-ipv4-mask-size': '25',
    });
    const a = fakeReplica(w);
    await a.assigner.announce('n1');
    await a.assigner.announce('n2');
    const before = [...claims(kv).keys()].sort();
    const err = await a.assigner.grow('n1', 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AssignError);
    expect((err as AssignError).code).toBe('exhausted');
    expect((err as AssignError).message).toBe(
      'no free IPv4 block for node n1 in cluster-pool-ipv4-cidr (198.18.0.0/24)',
    );
    expect(a.exhausted).toEqual([{ node: 'n1', family: 'IPv4', message: (err as Error).message }]);
    expect([...claims(kv).keys()].sort()).toEqual(before);
    expect(record(kv, 'n1')?.sets).toHaveLength(1);
  });

  it('an unacknowledged record write is read back: done is done; not done leaves claims to GC', async () => {
    const { kv, w } = setup();
    const a = fakeReplica(w, { orphanGraceMs: 60_000 });
    await a.assigner.announce('n1');
    // The write happens, its ack is lost: the reply still names the new set.
    kv.failNext('after', (key) => key === IpamKey.node('n1'));
    const done = await a.assigner.grow('n1', 1);
    expect(done.record.sets).toHaveLength(2);
    expect(cidrs(record(kv, 'n1'))).toEqual(cidrs(done.record));
    // The write is refused: unavailable, nothing assigned; the retry gets a set.
    kv.failNext('before', (key) => key === IpamKey.node('n1'));
    expect(await code(a.assigner.grow('n1', 2))).toMatch(/injected/);
    expect(record(kv, 'n1')?.sets).toHaveLength(2);
    const retry = await a.assigner.grow('n1', 2);
    expect(retry.record.sets).toHaveLength(3);
    // The refused attempt's two claims are orphans until GC, past the orphan grace period.
    expect(claims(kv).size).toBe(8);
    w.now += 60_000;
    const gc = await a.assigner.gcPass(a.nodesView());
    expect(gc.releasedOrphanBlocks).toBe(2);
    expect(new Set(claims(kv).keys())).toEqual(
      new Set(blockList(retry.record, FAMILIES).map((b) => IpamKey.block(b.family, b.cidr))),
    );
  });
});

describe("the agents' held blocks", () => {
  const held = (r: NodeRecord): NodeBlockValue[] => blockList(r, FAMILIES);

  it('rebuild a lost record with the same sets, in order, and are never given to another node', async () => {
    const { kv, w } = setup(DUAL, ['n1', 'n2', 'n3']);
    const a = fakeReplica(w);
    await a.assigner.announce('n1');
    await a.assigner.announce('n2');
    const r1 = (await a.assigner.grow('n1', 1)).record;
    const r2 = record(kv, 'n2') as NodeRecord;

    // The bucket is lost; a new replica starts on an empty one.
    const kv2 = new FakeKv();
    const w2: World = { ...w, kv: kv2 };
    const b = fakeReplica(w2);
    await b.report('n1', held(r1), 1);
    expect(cidrs(record(kv2, 'n1'))).toEqual(cidrs(r1));
    expect(b.assigned.map((r) => r.name)).toEqual(['n1']);
    // n2's agent has reported, but its report is seen after n3 is announced: its blocks are
    // pinned before any claim, so n3 gets neither n1's nor n2's blocks.
    b.held.apply('n2', held(r2), 2);
    b.assigner.repin();
    const r3 = await b.assigner.announce('n3');
    const taken = new Set([...cidrs(r1), ...cidrs(r2)]);
    expect(cidrs(r3).some((c) => taken.has(c))).toBe(false);
    // An announcement of n2 rebuilds it from the report instead of giving it a new set 0.
    await b.assigner.announce('n2');
    expect(cidrs(record(kv2, 'n2'))).toEqual(cidrs(r2));
    for (const [k, node] of claims(kv2)) {
      const owner = [r1, r2, r3].find((r) =>
        blockList(r as NodeRecord, FAMILIES).some((x) => IpamKey.block(x.family, x.cidr) === k),
      );
      expect(owner?.name).toBe(node);
    }
  });

  it('a block another node claimed is counted and logged as a conflict, and not taken from it', async () => {
    const { kv, w } = setup(DUAL, ['n1', 'n2']);
    const a = fakeReplica(w);
    await a.assigner.announce('n2');
    const r2 = record(kv, 'n2') as NodeRecord;
    // n1's agent says it holds n2's IPv4 block (data loss made two nodes use one block).
    const stolen = held(r2)[0] as NodeBlockValue;
    const own = {
      family: 'IPv6' as const,
      cidr: 'fd00:d1ad::ff00/120',
      gateway: 'fd00:d1ad::ff01',
    };
    await a.report('n1', [stolen, own], 1);
    expect(cidrs(record(kv, 'n1'))).toEqual([stolen.cidr, own.cidr]);
    expect((kv.json(IpamKey.block('IPv4', stolen.cidr)) as { node: string }).node).toBe('n2');
    expect((kv.json(IpamKey.block('IPv6', own.cidr)) as { node: string }).node).toBe('n1');
    expect((await a.metrics.rebuildConflicts.get()).values).toEqual([
      expect.objectContaining({ labels: { family: 'IPv4' }, value: 1 }),
    ]);
  });

  it('while claims are paused only rebuilds happen; a deleted node is never rebuilt', async () => {
    const { kv, w } = setup(DUAL, ['n1', 'n2']);
    w.nodes.set('gone', 'deleted');
    const a = fakeReplica(w);
    a.assigner.claimsPaused = true;
    expect(await code(a.assigner.announce('n2'))).toBe('unavailable');
    const blocks = [{ family: 'IPv4' as const, cidr: '198.18.7.0/24', gateway: '198.18.7.1' }];
    await a.report('n1', blocks, 1);
    await a.report('gone', [{ family: 'IPv4', cidr: '198.18.8.0/24', gateway: '198.18.8.1' }], 2);
    expect(cidrs(record(kv, 'n1'))).toEqual(['198.18.7.0/24']);
    expect(record(kv, 'gone')).toBeUndefined();
    a.assigner.claimsPaused = false;
    // n1's record is rebuilt with what its agent has: IPv4 only; an announcement completes it.
    expect(cidrs(await a.assigner.announce('n1'))).toHaveLength(2);
    expect(cidrs(await a.assigner.announce('n2'))).toHaveLength(2);
  });

  it("purge a node's legacy slot and owner keys once its agent has reported, not before", async () => {
    const { kv, w } = setup(DUAL, ['n1', 'n2.lab']);
    const put = (k: string) => kv.asKv().put(k, new TextEncoder().encode('{}'));
    for (const k of [
      IpamKey.slot('n1', 0),
      IpamKey.slot('n1', 7),
      IpamKey.owner('n1', 'c.1'),
      IpamKey.slot('n2.lab', 3),
      IpamKey.owner('n2.lab', 'c2'),
      IpamKey.sync('old-replica'),
    ])
      await put(k);
    await kv.asKv().put(IpamKey.sync('live-replica'), new TextEncoder().encode(String(w.now)));
    await kv.asKv().put(IpamKey.sync('old-replica'), new TextEncoder().encode('1'));
    const a = fakeReplica(w);
    await a.assigner.load();
    expect(kv.liveKeys(IpamKey.syncFilter)).toEqual([IpamKey.sync('live-replica')]);
    await a.assigner.announce('n1');
    expect(kv.liveKeys(IpamKey.slotFilter())).toHaveLength(3);
    await a.report('n1', blockList(record(kv, 'n1') as NodeRecord, FAMILIES), 1);
    expect(kv.liveKeys(IpamKey.slotFilter())).toEqual([IpamKey.slot('n2.lab', 3)]);
    expect(kv.liveKeys(IpamKey.ownerFilter())).toEqual([IpamKey.owner('n2.lab', 'c2')]);
    expect(kv.last.get(IpamKey.slot('n1', 7))?.op).toBe('PURGE');
    expect((await a.metrics.legacyKeysPurged.get()).values[0]?.value).toBe(3);
  });
});

describe('garbage collection', () => {
  it("returns a deleted node's blocks after the grace period: its records in the stream first, then its keys", async () => {
    const { kv, w } = setup(DUAL, ['n1', 'n2']);
    const a = fakeReplica(w, { nodeGraceMs: 60_000 });
    await a.assigner.announce('n1');
    await a.assigner.announce('n2');
    const r1 = (await a.assigner.grow('n1', 1)).record;
    await a.report('n1', blockList(r1, FAMILIES), 1);
    await kv.asKv().put(IpamKey.slot('n1', 4), new TextEncoder().encode('{}'));
    w.nodes.set('n1', 'deleted');
    w.deletedAt.set('n1', w.now);
    expect((await a.assigner.gcPass(a.nodesView())).releasedNodes).toBe(0);
    w.now += 60_000;
    expect(await a.assigner.gcPass(a.nodesView())).toMatchObject({ releasedNodes: 1 });
    expect(a.purged).toEqual(['n1']);
    expect(a.returned.map((r) => cidrs(r))).toEqual([cidrs(r1)]);
    expect(record(kv, 'n1')).toBeUndefined();
    expect(kv.last.get(IpamKey.node('n1'))?.op).toBe('PURGE');
    expect(kv.liveKeys(IpamKey.slotFilter())).toEqual([]);
    expect([...claims(kv).values()]).toEqual(['n2', 'n2']);
    expect(a.held.blocks('n1')).toEqual([]);
  });
});
