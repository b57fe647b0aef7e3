// ipam across a nats-server crash: the server is SIGKILLed in the middle of a burst and started
// again on the same store. The replicas must reconnect and their KV watches resume (a replica
// that believes a node full catches up through its watch before saying so), retries must settle
// on one pair per sandbox, and nothing may be handed out twice.
import type { Bus } from '@dyad/bus';
import { RemoteError } from '@dyad/bus';
import type { NatsServer } from '@dyad/testbed';
import { IPAM_KV_BUCKET } from '@dyad/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster, PodRef, Replica } from './harness.ts';
import {
  DUAL_STACK,
  allocate,
  allocateRetrying,
  metricValue,
  podRef,
  pool,
  startCluster,
  state,
} from './harness.ts';

// /26 and /122 blocks: 61 IPv4 pod addresses (network, gateway and broadcast reserved) and 62
// IPv6 ones, so a node holds 61 pods.
const ENV = {
  ...DUAL_STACK,
  DYAD_CLUSTER_POOL_IPV4_MASK_SIZE: '26',
  DYAD_CLUSTER_POOL_IPV6_MASK_SIZE: '122',
};
const CAPACITY = 61;
const NODES = Array.from({ length: 8 }, (_, i) => `restart-node-${i}`);

describe('ipam across a nats-server crash', () => {
  let c: Cluster;
  let nats: NatsServer;
  let bus: Bus;
  let replicas: Replica[];

  beforeAll(async () => {
    c = await startCluster(NODES, ENV, ['ipam-r1', 'ipam-r2']);
    ({ nats, bus, replicas } = c);
  });

  afterAll(async () => {
    await c?.stop();
  });

  it('SIGKILL of nats-server mid-burst: one pair per sandbox, none twice, and full nodes are still refused', async () => {
    const burst: PodRef[] = Array.from({ length: 400 }, (_, i) =>
      podRef(i, NODES[i % NODES.length] as string, 'r'),
    );
    let done = 0;
    let crash: Promise<void> | undefined;
    const results = await pool(burst, 64, async (p) => {
      const r = await allocateRetrying(bus, p);
      if (++done === 100) {
        crash = (async () => {
          await nats.kill();
          await new Promise((res) => setTimeout(res, 1500));
          await nats.restart();
        })();
      }
      return r;
    });
    await crash;
    // Some requests met the outage and were sent again.
    expect(results.some((r) => r.attempts > 1)).toBe(true);

    const v4 = new Set(results.map((r) => r.reply.addresses[0]?.address));
    const v6 = new Set(results.map((r) => r.reply.addresses[1]?.address));
    expect(v4.size).toBe(burst.length);
    expect(v6.size).toBe(burst.length);
    const again = await pool(burst, 64, (p) => allocate(bus, p));
    again.forEach((r, i) => expect(r.addresses).toEqual(results[i]?.reply.addresses));

    // Claims whose acks the crash swallowed are learned about and given back by their replicas
    // once the server is back: the bucket comes to hold exactly one slot per sandbox, with no GC.
    const node = NODES[0] as string;
    const held = burst.filter((p) => p.node === node).length;
    const kv = await bus.kv(IPAM_KV_BUCKET);
    const slotsOn = async () =>
      [...(await state(kv)).slots.keys()].filter((k) => k.startsWith(`slot.${node}.`)).length;
    // a hang guard, not a speed limit: unacknowledged writes time out after 5 s
    for (let i = 0; i < 600 && (await slotsOn()) !== held; i++)
      await new Promise((res) => setTimeout(res, 100));
    expect(await slotsOn()).toBe(held);

    // Fill that node, eight requests at a time over both replicas: every address left is given
    // out (none refused while one is free), then every request is refused as exhausted, by both
    // replicas. A replica that thinks a node full reads its watch up to now first; had its watch
    // not come back after the crash, it would never answer.
    const more = Array.from({ length: CAPACITY - held }, (_, i) => podRef(1000 + i, node, 'f'));
    const filled = await pool(more, 8, (p) => allocate(bus, p));
    const addrs = new Set([
      ...results
        .filter((_, i) => burst[i]?.node === node)
        .map((r) => r.reply.addresses[0]?.address),
      ...filled.map((r) => r.addresses[0]?.address),
    ]);
    expect(addrs.size).toBe(CAPACITY);
    const exhaustedBy = async (r: Replica) =>
      metricValue(await r.metrics(), 'dyad_ipam_allocations_total', { outcome: 'exhausted' });
    for (let i = 0; i < 40; i++) {
      const err = await allocate(bus, podRef(2000 + i, node, 'x')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RemoteError);
      expect((err as RemoteError).code).toBe('exhausted');
      const counts = await Promise.all(replicas.map(exhaustedBy));
      if (counts.every((c) => c > 0)) break;
    }
    for (const r of replicas) expect(await exhaustedBy(r)).toBeGreaterThan(0);
  }, 240_000);
});
