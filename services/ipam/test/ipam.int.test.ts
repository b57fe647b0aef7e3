// Two real ipam processes against a real nats-server: dual-stack allocation under concurrency,
// repeated requests, bad input, a replica SIGKILLed mid-burst, GC, and node deletion.
import type { Bus, KV } from '@dyad/bus';
import { RemoteError } from '@dyad/bus';
import type { PayloadOf } from '@dyad/contracts';
import {
  AddressesAllocated,
  AddressesReleased,
  AllocateRequest,
  Header,
  IPAM_NODES_STREAM,
  IpamKey,
  IpamNodeEvent,
  IpamSubject,
  deadLetterSubject,
  encodeEvent,
} from '@dyad/contracts';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { connect, headers as natsHeaders } from '@nats-io/transport-node';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseCidr, parseAddress, cidrContains } from '../src/addr.ts';
import type { AllocationReply, PodRef, Replica } from './harness.ts';
import {
  DUAL_STACK,
  FAST_GC,
  allocate,
  allocateRetrying,
  clientBus,
  heldAsReplied,
  ipamKv,
  metricValue,
  podRef,
  pool,
  publishNode,
  publishPod,
  readRecords,
  release,
  startReplica,
  state,
} from './harness.ts';

const ENV = {
  ...DUAL_STACK,
  ...FAST_GC,
  DYAD_IPAM_NODE_GRACE_S: '2',
  DYAD_IPAM_ORPHAN_GRACE_S: '30',
};
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

function inBlock(address: string, cidr: string): boolean {
  const c = parseCidr(cidr);
  const a = parseAddress(address);
  return c.ok && a !== undefined && cidrContains(c.cidr, a.family, a.value);
}

describe('ipam: dual-stack, two replicas', () => {
  let nats: NatsServer;
  let bus: Bus;
  let raw: NatsConnection;
  let kv: KV;
  const replicas: Replica[] = [];
  const allocatedEvents: PayloadOf<typeof AddressesAllocated>[] = [];
  const releasedEvents: PayloadOf<typeof AddressesReleased>[] = [];
  const first: PodRef[] = Array.from({ length: 2000 }, (_, i) =>
    podRef(i, NODES[i % 10] as string, 'a'),
  );
  const firstReplies = new Map<string, AllocationReply>();

  beforeAll(async () => {
    nats = await startNats();
    bus = await clientBus(nats.url);
    raw = await connect({ servers: nats.url, name: 'ipam-test-raw' });
    for (const n of [...NODES, 'node-gone']) await publishNode(bus, n);
    bus.subscribe([AddressesAllocated], `${IpamSubject.events}.allocated`, (d) => {
      allocatedEvents.push(d.value);
    });
    bus.subscribe([AddressesReleased], `${IpamSubject.events}.released`, (d) => {
      releasedEvents.push(d.value);
    });
    replicas.push(
      await startReplica(nats.url, ENV, 'ipam-a'),
      await startReplica(nats.url, ENV, 'ipam-b'),
    );
    kv = await ipamKv(bus);
  });

  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.proc.stop()));
    await raw?.close();
    await bus?.close();
    await nats?.stop();
  });

  it('gives every announced node one block per family, published on DYAD_IPAM_NODES', async () => {
    const snap = await eventually(async () => {
      const s = await bus.snapshot([IpamNodeEvent], { stream: IPAM_NODES_STREAM });
      return s.size === NODES.length + 1 ? s : undefined;
    });
    const blocks = [...snap.values()].map((d) => d.value);
    expect(
      blocks.every(
        (b) => b.op === 'upsert' && b.blocks.map((x) => x.family).join() === 'IPv4,IPv6',
      ),
    ).toBe(true);
    const v4 = blocks.map((b) => b.blocks[0]?.cidr);
    const v6 = blocks.map((b) => b.blocks[1]?.cidr);
    expect(new Set(v4).size).toBe(blocks.length);
    expect(new Set(v6).size).toBe(blocks.length);
    for (const b of blocks) {
      expect(b.blocks[0]?.cidr).toMatch(/^198\.1[89]\.\d+\.0\/24$/);
      expect(b.blocks[0]?.gateway).toBe(b.blocks[0]?.cidr.replace(/0\/24$/, '1'));
      expect(b.blocks[1]?.cidr).toMatch(/^fd00:d1ad:.*\/120$/);
    }
    const records = await readRecords(kv);
    for (const b of blocks) expect(records.get(b.node)?.blocks.IPv4?.cidr).toBe(b.blocks[0]?.cidr);
  });

  it('2,000 concurrent allocations across 10 nodes from both replicas give 2,000 distinct pairs', async () => {
    await pool(first, 64, (p) => publishPod(bus, p));
    const replies = await pool(first, 200, (p) => allocate(bus, p, { timeoutMs: 60_000 }));
    const v4 = new Set<string>();
    const v6 = new Set<string>();
    const records = await readRecords(kv);
    replies.forEach((r, i) => {
      const p = first[i] as PodRef;
      firstReplies.set(p.containerId, r);
      expect(r).toMatchObject({ node: p.node, podUid: p.podUid, containerId: p.containerId });
      expect(r.addresses.map((a) => a.family)).toEqual(['IPv4', 'IPv6']);
      const [a4, a6] = r.addresses;
      v4.add(a4?.address ?? '');
      v6.add(a6?.address ?? '');
      const blocks = records.get(p.node)?.blocks;
      expect(a4?.cidr).toBe(blocks?.IPv4?.cidr);
      expect(a6?.gateway).toBe(blocks?.IPv6?.gateway);
      expect(inBlock(a4?.address ?? '', a4?.cidr ?? '')).toBe(true);
      expect(inBlock(a6?.address ?? '', a6?.cidr ?? '')).toBe(true);
    });
    expect(v4.size).toBe(2000);
    expect(v6.size).toBe(2000);
    // The bucket says the same: one slot per sandbox, its owner pointing at it.
    const s = await state(kv);
    expect(s.slots.size).toBe(2000);
    for (const [key, slot] of s.slots) {
      const reply = firstReplies.get(slot.containerId);
      expect(reply?.addresses.map((a) => a.address)).toEqual([slot.ips.IPv4, slot.ips.IPv6]);
      const node = reply?.node ?? '';
      expect(s.owners.get(IpamKey.owner(node, slot.containerId))?.slot).toBe(
        Number(key.split('.').at(-1)),
      );
    }
    // Both replicas served, and each allocation was announced exactly once.
    for (const r of replicas) {
      expect(
        metricValue(await r.metrics(), 'dyad_ipam_allocations_total', { outcome: 'new' }),
      ).toBeGreaterThan(0);
    }
    await eventually(async () => allocatedEvents.length >= 2000);
    expect(new Set(allocatedEvents.map((e) => e.containerId)).size).toBe(2000);
    expect(allocatedEvents).toHaveLength(2000);
  }, 300_000);

  it('a repeated request returns the same pair, whichever replica answers', async () => {
    for (const p of first.slice(0, 5)) {
      const again = await Promise.all(Array.from({ length: 8 }, () => allocate(bus, p)));
      for (const r of again)
        expect(r.addresses).toEqual(firstReplies.get(p.containerId)?.addresses);
    }
    expect((await state(kv)).slots.size).toBe(2000);
  });

  it('bad input gets a typed error reply, malformed requests are dead-lettered, nothing changes', async () => {
    const dlq: Msg[] = [];
    const sub = raw.subscribe(deadLetterSubject('ipam'));
    void (async () => {
      for await (const m of sub) dlq.push(m);
    })();
    const before = (await state(kv)).revs;

    // A CloudEvent of the right type without a container id.
    const ev = encodeEvent(
      AllocateRequest,
      { ...podRef(1, 'node-0', 'bad') },
      { source: '/dyad/test' },
    );
    const body = JSON.parse(new TextDecoder().decode(ev.body)) as Record<string, unknown>;
    delete body['containerId'];
    const h = natsHeaders();
    for (const [k, v] of Object.entries(ev.headers)) h.set(k, v);
    const reply = await raw.request(
      IpamSubject.allocate,
      new TextEncoder().encode(JSON.stringify(body)),
      {
        headers: h,
        timeout: 10_000,
      },
    );
    expect(reply.headers?.get(Header.type)).toBe('io.dyad.bus.error.v1');
    expect(JSON.parse(new TextDecoder().decode(reply.data))).toMatchObject({
      error: { code: 'bad-request', message: expect.stringContaining('containerId') as unknown },
    });
    await eventually(async () => dlq.length === 1);
    expect(dlq[0]?.headers?.get('dyad-dlq-reason')).toBe('schema');

    const code = (p: Promise<unknown>) =>
      p.then(
        () => 'ok',
        (e: unknown) => (e instanceof RemoteError ? e.code : String(e)),
      );
    expect(await code(allocate(bus, podRef(1, 'no-such-node')))).toBe('unknown-node');
    expect(await code(allocate(bus, { ...(first[0] as PodRef), podUid: 'another-pod' }))).toBe(
      'owner-mismatch',
    );
    expect(await code(release(bus, { node: 'node-0', containerId: 'never-allocated' }))).toBe(
      'not-allocated',
    );
    expect(await code(release(bus, { node: 'node-0', podUid: 'no-such-pod' }))).toBe(
      'not-allocated',
    );
    expect(await code(release(bus, { node: 'no-such-node', containerId: 'x' }))).toBe(
      'unknown-node',
    );
    sub.unsubscribe();

    const after = (await state(kv)).revs;
    expect(after).toEqual(before);
  });

  it('release is idempotent and its addresses come back', async () => {
    const p = first[1] as PodRef;
    const r1 = await release(bus, { node: p.node, containerId: p.containerId });
    expect(r1.alreadyReleased).toBe(false);
    expect(r1.released[0]?.addresses).toEqual(
      firstReplies
        .get(p.containerId)
        ?.addresses.map((a) => ({ family: a.family, address: a.address })),
    );
    expect(await release(bus, { node: p.node, containerId: p.containerId })).toMatchObject({
      released: [],
      alreadyReleased: true,
    });
    await eventually(async () =>
      releasedEvents.some((e) => e.containerId === p.containerId && e.reason === 'request'),
    );
    // Back for good: allocate it again for the rest of the tests.
    firstReplies.set(p.containerId, await allocate(bus, p));
  });

  it('SIGKILL of a replica mid-burst: retries return one pair each, nothing is duplicated, GC leaves no leak', async () => {
    const burst: PodRef[] = Array.from({ length: 1000 }, (_, i) =>
      podRef(i, NODES[10 + (i % 10)] as string, 'k'),
    );
    await pool(burst, 64, (p) => publishPod(bus, p));
    let done = 0;
    let killed: Promise<void> | undefined;
    const victim = replicas[0] as Replica;
    const results = await pool(burst, 100, async (p) => {
      const r = await allocateRetrying(bus, p);
      if (++done === 300) {
        killed = (async () => {
          await victim.proc.kill();
          await new Promise((res) => setTimeout(res, 1000));
          replicas[0] = await startReplica(nats.url, ENV, 'ipam-a2');
        })();
      }
      return r;
    });
    await killed;
    expect(victim.proc.exitInfo?.signal).toBe('SIGKILL');
    // Requests the dead replica had taken timed out and were sent again.
    expect(results.some((r) => r.attempts > 1)).toBe(true);

    // Every sandbox got one pair; asking again gives the same one.
    const all4 = new Set([...firstReplies.values()].map((r) => r.addresses[0]?.address));
    const all6 = new Set([...firstReplies.values()].map((r) => r.addresses[1]?.address));
    for (const { reply } of results) {
      all4.add(reply.addresses[0]?.address);
      all6.add(reply.addresses[1]?.address);
    }
    expect(all4.size).toBe(3000);
    expect(all6.size).toBe(3000);
    const again = await pool(burst, 100, (p) => allocate(bus, p));
    again.forEach((r, i) => expect(r.addresses).toEqual(results[i]?.reply.addresses));

    // In the bucket: each owner points at a slot holding its sandbox and the addresses returned.
    const s = await state(kv);
    const byCid = new Map<string, number>();
    for (const slot of s.slots.values())
      byCid.set(slot.containerId, (byCid.get(slot.containerId) ?? 0) + 1);
    expect(
      heldAsReplied(
        s,
        burst,
        results.map((r) => r.reply),
      ),
    ).toEqual([]);

    // The pods go away: GC frees their slots (and any claim a killed replica left behind),
    // and leaves every live pod's addresses where they were.
    await pool(burst, 64, (p) => publishPod(bus, p, 'delete'));
    const settled = await eventually(async () => {
      const now = await state(kv);
      return now.slots.size === 2000 ? now : undefined;
    }, 90_000);
    for (const slot of settled.slots.values()) {
      expect(firstReplies.get(slot.containerId)?.addresses.map((a) => a.address)).toEqual([
        slot.ips.IPv4,
        slot.ips.IPv6,
      ]);
    }
    await eventually(
      async () => releasedEvents.filter((e) => e.reason === 'pod-deleted').length >= 1000,
    );
  }, 300_000);

  it('a deleted node returns its blocks to the pool after the grace period', async () => {
    const p = podRef(1, 'node-gone', 'g');
    await publishPod(bus, p);
    const r = await allocate(bus, p);
    const cidrs = r.addresses.map((a) => a.cidr);
    const before = [...(await state(kv)).revs.keys()].filter((k) => k.includes('node-gone'));
    expect(before).toEqual(
      expect.arrayContaining([
        IpamKey.node('node-gone'),
        IpamKey.owner('node-gone', p.containerId),
      ]),
    );
    await publishNode(bus, 'node-gone', 'delete');
    await eventually(async () => {
      const s = await state(kv);
      const left = [...s.revs.keys()].filter((k) => k.includes('node-gone'));
      return left.length === 0;
    });
    // Purged, not deleted: each key keeps at most an expiring purge marker, no delete marker
    // that would stay in the bucket for ever.
    for (const k of before) {
      const e = await kv.get(k);
      expect([k, e?.operation ?? 'gone']).toEqual([k, expect.stringMatching(/^(PURGE|gone)$/)]);
    }
    const blockKeys: string[] = [];
    for await (const k of await kv.keys(`${IpamKey.blockPrefix}>`)) blockKeys.push(k);
    for (const c of cidrs)
      expect(blockKeys.some((k) => k.endsWith(c.replace(/:/g, '-').replace('/', '_')))).toBe(false);
    const snap = await bus.snapshot([IpamNodeEvent], { stream: IPAM_NODES_STREAM });
    expect([...snap.values()].find((d) => d.value.node === 'node-gone')?.value).toMatchObject({
      op: 'delete',
    });
    await expect(allocate(bus, podRef(2, 'node-gone', 'g'))).rejects.toMatchObject({
      code: 'unknown-node',
    });
  });
});
