// Block assignment under random interleavings: three replicas share one in-memory bucket that
// delays each write a random number of event-loop turns and, in half the runs, refuses some
// writes or loses their acks. Nodes are announced (to one to three replicas at once, as every
// replica follows kube-bridge), their agents ask for more sets (a request sometimes racing its
// own retry on another replica, sometimes sent again after a lost reply, every failure retried
// as an agent does), some nodes are deleted, and GC passes run on random replicas throughout.
// The pools are small, so some sets are refused for exhaustion. Seeded: a failure reproduces.
import { IpamKey } from '@dyad/contracts';
import { prng } from '@dyad/testbed';
import { describe, expect, it } from 'vitest';
import { AssignError } from '../src/assigner.ts';
import { blockList } from '../src/record.ts';
import type { NodeRecord } from '../src/record.ts';
import { FakeKv } from './fake-kv.ts';
import type { FakeReplica } from './fake-replica.ts';
import { fakeReplica, world } from './fake-replica.ts';

const SEEDS = Number(process.env['DYAD_ASSIGN_SEEDS'] ?? '300');
const NODES = ['n0', 'n1', 'n2', 'n3', 'n4', 'n5.lab'];
const NODE_GRACE_MS = 1000;
const ORPHAN_GRACE_MS = 600_000;
/** 16 IPv4 blocks and 32 IPv6 ones: a few nodes growing a few times run out of IPv4. */
const SMALL_POOLS = {
  'enable-ipv6': 'true',
  'cluster-pool-ipv4-cidr': '198.18.0.0/24',
  'cluster-pool-ipv4-mask-size': '28',
  'cluster-pool-ipv6-cidr': 'fd00::/120',
  'cluster-pool-ipv6-mask-size': '125',
};

const turns = async (n: number): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
};

const cidrsOf = (r: NodeRecord): string[] =>
  blockList(r, ['IPv4', 'IPv6']).map((b) => `${b.family} ${b.cidr}`);

interface Run {
  readonly problems: string[];
  readonly grown: number;
  readonly exhausted: number;
  readonly deleted: number;
}

async function run(seed: number, faults: boolean): Promise<Run> {
  const rnd = prng(seed);
  const kv = new FakeKv();
  const w = world(kv, SMALL_POOLS);
  const opts = { nodeGraceMs: NODE_GRACE_MS, orphanGraceMs: ORPHAN_GRACE_MS };
  const replicas = [fakeReplica(w, opts), fakeReplica(w, opts), fakeReplica(w, opts)];
  const pick = (): FakeReplica => replicas[Math.floor(rnd() * replicas.length)] as FakeReplica;
  kv.fault = {
    holdWrite: () => (rnd() < 0.5 ? undefined : turns(Math.floor(rnd() * 6))),
    ...(faults
      ? {
          beforeWrite: () => {
            if (rnd() < 0.03) throw new Error('injected: write refused');
          },
          afterWrite: () => {
            if (rnd() < 0.03) throw new Error('injected: ack lost');
          },
        }
      : {}),
  };
  const problems: string[] = [];
  /** Per node, the blocks every successful grow reply named, in reply order. */
  const replies = new Map<string, string[][]>();
  const deleted = new Set<string>();
  let grown = 0;
  let exhausted = 0;

  /** One grow as an agent sends it: retried on every failure but the final answers. */
  const growOnce = async (
    node: string,
    sets: number,
  ): Promise<{ record: NodeRecord } | 'exhausted' | 'unknown-node'> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await pick().assigner.grow(node, sets);
      } catch (err) {
        if (err instanceof AssignError && (err.code === 'exhausted' || err.code === 'unknown-node'))
          return err.code;
        if (!/injected/.test(String(err)) || attempt > 50) {
          problems.push(`${node}: grow(${sets}) failed: ${String(err)}`);
          return 'exhausted';
        }
      }
    }
  };

  const nodeLife = async (node: string): Promise<void> => {
    await turns(Math.floor(rnd() * 10));
    w.nodes.set(node, 'live');
    // kube-bridge's event reaches every replica; here one to three of them act on it.
    const n = 1 + Math.floor(rnd() * 3);
    await Promise.allSettled(Array.from({ length: n }, () => pick().assigner.announce(node)));
    // The agent holds what it was given: the sets of the latest assignment published for its
    // node (IpamNodeEvent), or of a grow reply; it asks for no set before it has set 0.
    let known = 0;
    const published = (): number =>
      Math.max(
        0,
        ...replicas
          .flatMap((r) => r.assigned.filter((a) => a.name === node))
          .map((a) => a.sets.length),
      );
    const grows = Math.floor(rnd() * 4);
    for (let g = 0; g < grows; g++) {
      await turns(Math.floor(rnd() * 10));
      known = Math.max(known, published());
      if (known === 0) {
        // No set 0 yet (exhausted, or its writes failed): kube-bridge's next node event.
        await pick()
          .assigner.announce(node)
          .catch(() => undefined);
        continue;
      }
      const x = rnd();
      // Racing its retry on another replica, sent again after a lost reply, or alone.
      const attempts =
        x < 0.3
          ? await Promise.all([growOnce(node, known), growOnce(node, known)])
          : x < 0.5
            ? [await growOnce(node, known), await growOnce(node, known)]
            : [await growOnce(node, known)];
      const ok = attempts.flatMap((a) => (typeof a === 'object' ? [a.record] : []));
      if (attempts.includes('exhausted')) exhausted++;
      for (const r of ok) {
        if (r.sets.length > known + 1)
          problems.push(`${node}: grow(${known}) answered ${r.sets.length} sets`);
        if (cidrsOf(r).join() !== cidrsOf(ok[0] as NodeRecord).join())
          problems.push(`${node}: two answers to one grow(${known}) differ`);
        replies.set(node, [...(replies.get(node) ?? []), cidrsOf(r)]);
      }
      const first = ok[0];
      if (first !== undefined) {
        if (first.sets.length > known) grown++;
        known = first.sets.length;
      }
    }
    if (rnd() < 0.3) {
      w.nodes.set(node, 'deleted');
      w.deletedAt.set(node, w.now);
      deleted.add(node);
      const late = await growOnce(node, known);
      if (late !== 'unknown-node')
        problems.push(`${node}: deleted, yet grow answered ${JSON.stringify(late)}`);
    }
  };

  let running = true;
  const gcLoop = async (): Promise<void> => {
    while (running) {
      await turns(1 + Math.floor(rnd() * 30));
      w.now += 200;
      const r = pick();
      await r.assigner.gcPass(r.nodesView()).catch((err: unknown) => {
        if (!/injected/.test(String(err))) problems.push(`GC failed: ${String(err)}`);
      });
    }
  };
  const gc = gcLoop();
  await Promise.all(NODES.map((n) => nodeLife(n)));
  running = false;
  await gc;

  // Faults off; past every grace period, GC returns deleted nodes' blocks and removes orphans.
  kv.fault = {};
  w.now += ORPHAN_GRACE_MS + NODE_GRACE_MS;
  for (const r of replicas.slice(0, 2)) await r.assigner.gcPass(r.nodesView());

  const records = new Map<string, NodeRecord>();
  for (const key of kv.liveKeys(IpamKey.nodeFilter)) {
    const r = kv.json(key) as NodeRecord;
    records.set(r.name, r);
  }
  // No block in two records; every claim is its record's, and every record block is claimed.
  const holder = new Map<string, string>();
  for (const r of records.values()) {
    for (const b of blockList(r, ['IPv4', 'IPv6'])) {
      const key = IpamKey.block(b.family, b.cidr);
      const other = holder.get(key);
      if (other !== undefined) problems.push(`${b.cidr} is held by ${other} and ${r.name}`);
      holder.set(key, r.name);
      const claim = kv.json(key) as { node: string } | undefined;
      if (claim?.node !== r.name)
        problems.push(`${r.name} holds ${b.cidr}, claimed by ${claim?.node ?? 'nobody'}`);
    }
    for (const [i, s] of r.sets.entries()) {
      if (s.IPv4 === undefined || s.IPv6 === undefined)
        problems.push(`${r.name}: set ${i} is incomplete: ${JSON.stringify(s)}`);
    }
  }
  for (const key of kv.liveKeys(IpamKey.blockFilter)) {
    if (!holder.has(key)) problems.push(`claim ${key} leaked (${JSON.stringify(kv.json(key))})`);
  }
  for (const node of NODES) {
    const r = records.get(node);
    if (deleted.has(node)) {
      if (r !== undefined) problems.push(`${node} was deleted, yet has a record`);
      continue;
    }
    // The node's sets are exactly what its grow replies named: each reply is the record as it
    // was then (sets never change, only more come), and the last is the record now.
    const named = replies.get(node) ?? [];
    const now = r === undefined ? [] : cidrsOf(r);
    for (const reply of named) {
      if (now.slice(0, reply.length).join() !== reply.join())
        problems.push(`${node}: a reply named ${reply.join()}, the record says ${now.join()}`);
    }
    const longest = Math.max(0, ...named.map((x) => x.length));
    if (named.length > 0 ? now.length !== longest : (r?.sets.length ?? 0) > 1)
      problems.push(`${node}: the record has sets no reply named: ${now.join()}`);
  }
  return { problems, grown, exhausted, deleted: deleted.size };
}

describe('block assignment under random interleavings', () => {
  const totals = { grown: 0, exhausted: 0, deleted: 0 };
  it.each(Array.from({ length: SEEDS }, (_, s) => [s + 1, s % 2 === 1] as const))(
    'seed %i (write faults: %s): no block twice, sets as replied, nothing leaked after GC',
    async (seed, faults) => {
      const r = await run(seed, faults);
      expect(r.problems).toEqual([]);
      totals.grown += r.grown;
      totals.exhausted += r.exhausted;
      totals.deleted += r.deleted;
    },
  );

  it('the runs did grow nodes, exhaust a pool and delete nodes', () => {
    expect(totals.grown).toBeGreaterThan(SEEDS);
    expect(totals.exhausted).toBeGreaterThan(0);
    expect(totals.deleted).toBeGreaterThan(0);
  });
});
