// Two real ipam processes against a real nats-server: set 0 for announced nodes, grow requests
// (concurrent, racing, repeated), bad input, a replica SIGKILLed mid-burst, the legacy keys of
// agents upgraded in place, and a deleted node's blocks and records.
import type { Bus, KvBucket } from '@dyad/bus';
import { RemoteError } from '@dyad/bus';
import type { PayloadOf } from '@dyad/contracts';
import {
  AddressesAllocated,
  GrowRequest,
  Header,
  IPAM_ALLOCATIONS_STREAM,
  IpamAllocationsStream,
  IpamKey,
  IpamKvBucket,
  deadLetterSubject,
  encodeEvent,
  ipamAllocSubject,
  ipamGrowSubject,
  ipamHeldSubject,
} from '@dyad/contracts';
import { startNats } from '@dyad/testbed';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsServer } from '@dyad/testbed';
import { connect, headers as natsHeaders } from '@nats-io/transport-node';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Blocks, Replica } from './harness.ts';
import {
  DUAL_STACK,
  FAST_GC,
  assignments,
  clientBus,
  grow,
  ipamKv,
  metricValue,
  pool,
  publishHeld,
  publishNode,
  readRecords,
  startReplica,
} from './harness.ts';

const ENV = { ...DUAL_STACK, ...FAST_GC, DYAD_IPAM_ORPHAN_GRACE_S: '30' };
const NODES = Array.from({ length: 20 }, (_, i) => `node-${i}`);

async function eventually<T>(
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 60_000,
): Promise<T> {
  return vi.waitFor(
    async () => {
      const v = await fn();
      if (v === undefined || v === false) throw new Error('not yet');
      return v;
    },
    { timeout: timeoutMs, interval: 200 },
  );
}

const code = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'ok',
    (e: unknown) => (e instanceof RemoteError ? e.code : String(e)),
  );

const cidrs = (b: Blocks | undefined): string[] => (b ?? []).map((x) => x.cidr);

/** Revisions of every key in the bucket: equal before and after means nothing was written. */
async function revisions(kv: KvBucket): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const k of await kv.keys()) {
    const e = await kv.get(k);
    if (e !== undefined) out.set(k, e.revision);
  }
  return out;
}

describe('ipam: dual-stack block sets, two replicas', () => {
  let nats: NatsServer;
  let bus: Bus;
  let raw: NatsConnection;
  let kv: KvBucket;
  const replicas: Replica[] = [];
  /** Each node's blocks as its last grow reply named them. */
  const held = new Map<string, Blocks>();

  /** What beforeAll made, undone last first; a set-up that failed half way undoes its half. */
  const teardown: Array<() => Promise<unknown>> = [];

  beforeAll(async () => {
    nats = await startNats();
    teardown.push(() => nats.stop());
    bus = await clientBus(nats.url);
    teardown.push(() => bus.close());
    raw = await connect({ servers: nats.url, name: 'ipam-test-raw' });
    teardown.push(() => raw.close());
    for (const n of [...NODES, 'node-gone']) await publishNode(bus, n);
    // Legacy keys, as the per-pod ipam left them for two nodes whose agents are upgraded in place.
    await bus.ensureKv([IpamKvBucket]);
    kv = await ipamKv(bus);
    const empty = new TextEncoder().encode('{}');
    for (const k of [IpamKey.slot('node-0', 3), IpamKey.owner('node-0', 'c1')]) {
      await kv.put(k, empty);
    }
    await kv.put(IpamKey.slot('node-1', 5), empty);
    replicas.push(
      await startReplica(nats.url, ENV, 'ipam-a'),
      await startReplica(nats.url, ENV, 'ipam-b'),
    );
  });

  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.proc.stop()));
    for (const undo of teardown.reverse()) await undo();
  });

  it('gives every announced node one block per family, published on DYAD_IPAM_NODES', async () => {
    const events = await eventually(async () => {
      const s = await assignments(bus);
      return s.size === NODES.length + 1 ? s : undefined;
    });
    const all = [...events.values()];
    expect(all.every((e) => e.op === 'upsert')).toBe(true);
    expect(all.every((e) => e.blocks.map((b) => b.family).join() === 'IPv4,IPv6')).toBe(true);
    const blocks = all.flatMap((e) => cidrs(e.blocks));
    expect(new Set(blocks).size).toBe(blocks.length);
    for (const e of all) {
      expect(e.blocks[0]?.cidr).toMatch(/^198\.1[89]\.\d+\.0\/24$/);
      expect(e.blocks[0]?.gateway).toBe(e.blocks[0]?.cidr.replace(/0\/24$/, '1'));
      expect(e.blocks[1]?.cidr).toMatch(/^fd00:d1ad:.*\/120$/);
    }
    const records = await readRecords(kv);
    for (const e of all) {
      expect(records.get(e.node)?.sets[0]?.IPv4?.cidr).toBe(e.blocks[0]?.cidr);
      expect(records.get(e.node)?.v).toBe(2);
    }
  });

  it('grows each node by one set, however the request is raced and repeated', async () => {
    // Each agent's request, sent twice at once (its retry racing it), then once more later.
    const replies = await pool(NODES, 8, async (n) => {
      const both = await Promise.all([grow(bus, n, 1), grow(bus, n, 1)]);
      const again = await grow(bus, n, 1);
      return [...both, again];
    });
    const events = await assignments(bus);
    replies.forEach((rs, i) => {
      const node = NODES[i] as string;
      const first = rs[0] as Blocks;
      expect(first).toHaveLength(4);
      for (const r of rs) expect(cidrs(r)).toEqual(cidrs(first));
      expect(first.map((b) => b.family)).toEqual(['IPv4', 'IPv6', 'IPv4', 'IPv6']);
      held.set(node, first);
      // The assignment event carries the new set too.
      expect(cidrs(events.get(node)?.blocks)).toEqual(cidrs(first));
    });
    const all = [...held.values()].flatMap(cidrs);
    expect(new Set(all).size).toBe(all.length);
    const records = await readRecords(kv);
    for (const [node, blocks] of held) {
      expect(records.get(node)?.sets).toHaveLength(2);
      expect(records.get(node)?.sets[1]?.IPv6?.cidr).toBe(blocks[3]?.cidr);
    }
    let added = 0;
    for (const r of replicas) {
      added += metricValue(await r.metrics(), 'dyad_ipam_grows_total', { outcome: 'added' });
    }
    expect(added).toBe(NODES.length);
  });

  it('refuses bad requests (dead-lettered) and unknown nodes with typed errors, changing nothing', async () => {
    const dlq: Msg[] = [];
    const sub = raw.subscribe(deadLetterSubject('ipam'));
    void (async () => {
      for await (const m of sub) dlq.push(m);
    })();
    await raw.flush();
    const before = await revisions(kv);
    const send = async (subject: string, body: unknown): Promise<Msg> => {
      const ev = encodeEvent(GrowRequest, { node: 'node-0', sets: 1 }, { source: '/dyad/test' });
      const h = natsHeaders();
      for (const [k, v] of Object.entries(ev.headers)) h.set(k, v);
      return raw.request(subject, new TextEncoder().encode(JSON.stringify(body)), {
        headers: h,
        timeout: 10_000,
      });
    };
    const errorOf = (m: Msg) =>
      (JSON.parse(new TextDecoder().decode(m.data)) as { error: { code: string; message: string } })
        .error;

    // A request for node-0 sent on node-1's subject.
    const wrong = await send(ipamGrowSubject('node-1'), { node: 'node-0', sets: 1 });
    expect(wrong.headers?.get(Header.type)).toBe('io.dyad.bus.error.v1');
    expect(errorOf(wrong)).toMatchObject({ code: 'bad-request' });
    expect(errorOf(wrong).message).toContain('subject-mismatch');
    // No set count.
    const malformed = await send(ipamGrowSubject('node-0'), { node: 'node-0', sets: 0 });
    expect(errorOf(malformed)).toMatchObject({ code: 'bad-request' });
    await eventually(() => Promise.resolve(dlq.length === 2));
    expect(dlq.map((m) => m.headers?.get('dyad-dlq-reason')).sort()).toEqual([
      'schema',
      'subject-mismatch',
    ]);

    expect(await code(grow(bus, 'no-such-node', 1))).toBe('unknown-node');
    sub.unsubscribe();
    expect(await revisions(kv)).toEqual(before);
  });

  it("purges a node's legacy slot and owner keys once its agent has reported its blocks", async () => {
    const legacy = async () => {
      const out: string[] = [];
      for (const f of [IpamKey.slotFilter(), IpamKey.ownerFilter()])
        out.push(...(await kv.keys(f)));
      return out.sort();
    };
    expect(await legacy()).toEqual(['owner.node-0.c1', 'slot.node-0.3', 'slot.node-1.5']);
    await publishHeld(bus, 'node-0', held.get('node-0') ?? []);
    await eventually(async () => (await legacy()).length === 1);
    expect(await legacy()).toEqual(['slot.node-1.5']);
    expect((await kv.get(IpamKey.slot('node-0', 3)))?.operation).toBe('PURGE');
  });

  it('SIGKILL of a replica mid-burst: retried grows each get one set, as the bucket says', async () => {
    let done = 0;
    let killed: Promise<void> | undefined;
    const victim = replicas[0] as Replica;
    const replies = await pool(NODES, 10, async (n) => {
      for (let attempt = 1; ; attempt++) {
        try {
          const r = await grow(bus, n, 2, 2000);
          if (++done === 5) {
            killed = (async () => {
              await victim.proc.kill();
              replicas[0] = await startReplica(nats.url, ENV, 'ipam-a2');
            })();
          }
          return r;
        } catch (err) {
          // As an agent: a lost request or reply, or the store away, is retried.
          if (attempt > 30 || (err instanceof RemoteError && err.code !== 'unavailable')) throw err;
        }
      }
    });
    await killed;
    expect(victim.proc.exitInfo?.signal).toBe('SIGKILL');
    const records = await readRecords(kv);
    replies.forEach((r, i) => {
      const node = NODES[i] as string;
      expect(r).toHaveLength(6);
      expect(cidrs(r).slice(0, 4)).toEqual(cidrs(held.get(node)));
      const rec = records.get(node);
      expect(rec?.sets.map((s) => [s.IPv4?.cidr, s.IPv6?.cidr]).flat()).toEqual(cidrs(r));
      held.set(node, r);
    });
    const all = [...records.values()].flatMap((r) => r.sets.flatMap((s) => [s.IPv4, s.IPv6]));
    expect(new Set(all.map((b) => b?.cidr)).size).toBe(all.length);
  }, 120_000);

  it("a deleted node's blocks return to the pool after the grace period, and its records in the allocations stream go", async () => {
    await bus.ensureStreams([IpamAllocationsStream]);
    const [gone] = (await assignments(bus)).get('node-gone')?.blocks ?? [];
    expect(gone).toBeDefined();
    await publishHeld(bus, 'node-gone', (await assignments(bus)).get('node-gone')?.blocks ?? []);
    const sandbox: PayloadOf<typeof AddressesAllocated> = {
      node: 'node-gone',
      namespace: 'default',
      pod: 'p',
      podUid: 'uid-p',
      containerId: 'c1',
      addresses: [{ family: 'IPv4', address: (gone?.cidr ?? '').replace(/0\/24$/, '2') }],
      allocatedAt: new Date().toISOString(),
    };
    await bus.jsPublish(AddressesAllocated, ipamAllocSubject('node-gone', 'c1'), sandbox);
    await publishHeld(bus, 'node-9', held.get('node-9') ?? []);

    await publishNode(bus, 'node-gone', 'delete');
    const tomb = await eventually(async () => {
      const e = (await assignments(bus)).get('node-gone');
      return e?.op === 'delete' ? e : undefined;
    });
    expect(tomb.blocks.map((b) => b.cidr)).toContain(gone?.cidr);
    expect((await kv.get(IpamKey.node('node-gone')))?.operation ?? 'gone').toMatch(/PURGE|gone/);
    for (const b of tomb.blocks) {
      expect((await kv.get(IpamKey.block(b.family, b.cidr)))?.operation ?? 'gone').not.toBe('PUT');
    }
    const left = await bus.snapshot([AddressesAllocated], { stream: IPAM_ALLOCATIONS_STREAM });
    expect([...left.keys()].filter((subject) => subject.includes('node-gone'))).toEqual([]);
    const jsm = await jetstreamManager(raw);
    const lastOf = (subject: string) =>
      jsm.streams
        .getMessage(IPAM_ALLOCATIONS_STREAM, { last_by_subj: subject })
        .then((m) => m !== null)
        .catch(() => false);
    expect(await lastOf(ipamHeldSubject('node-gone'))).toBe(false);
    // Another node's report stays.
    expect(await lastOf(ipamHeldSubject('node-9'))).toBe(true);
    expect(await code(grow(bus, 'node-gone', 1))).toBe('unknown-node');
  });
});
