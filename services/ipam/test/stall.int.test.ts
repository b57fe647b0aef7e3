// A replica that stalls (SIGSTOP, as a long GC pause or a starved CPU would) in the middle of a
// burst, while the agents' retries go to the other replica, then goes on (SIGCONT) and finishes
// the requests it held, late. Nothing it writes then may give an address twice or a sandbox a
// second pair; what it leaves behind GC removes, and nothing a live sandbox holds.
import type { Bus, KV } from '@dyad/bus';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Cluster, PodRef, Replica } from './harness.ts';
import {
  DUAL_STACK,
  FAST_GC,
  allocate,
  allocateRetrying,
  heldAsReplied,
  ipamKv,
  podRef,
  pool,
  publishPod,
  startCluster,
  state,
} from './harness.ts';

const ENV = { ...DUAL_STACK, ...FAST_GC };
const NODES = Array.from({ length: 6 }, (_, i) => `stall-node-${i}`);

describe('a replica that stalls mid-burst', () => {
  let c: Cluster;
  let bus: Bus;
  let kv: KV;
  let replicas: Replica[];

  beforeAll(async () => {
    c = await startCluster(NODES, ENV, ['ipam-s1', 'ipam-s2']);
    ({ bus, replicas } = c);
    kv = await ipamKv(bus);
  });

  afterAll(async () => {
    replicas[0]?.proc.signal('SIGCONT');
    await c?.stop();
  });

  it('finishes late without a duplicate or a second pair; GC removes what it left', async () => {
    const burst: PodRef[] = Array.from({ length: 600 }, (_, i) =>
      podRef(i, NODES[i % NODES.length] as string, 's'),
    );
    await pool(burst, 64, (p) => publishPod(bus, p));
    const slow = replicas[0] as Replica;
    let done = 0;
    let stall: Promise<void> | undefined;
    const results = await pool(burst, 64, async (p) => {
      const r = await allocateRetrying(bus, p);
      if (++done === 150) {
        stall = (async () => {
          slow.proc.signal('SIGSTOP');
          // Longer than a request's timeout (2 s): what it held is asked of the other replica.
          await new Promise((res) => setTimeout(res, 5000));
          slow.proc.signal('SIGCONT');
        })();
      }
      return r;
    });
    await stall;
    expect(results.some((r) => r.attempts > 1)).toBe(true);

    const v4 = new Set(results.map((r) => r.reply.addresses[0]?.address));
    const v6 = new Set(results.map((r) => r.reply.addresses[1]?.address));
    expect(v4.size).toBe(burst.length);
    expect(v6.size).toBe(burst.length);

    // Once the stalled replica's late writes are in and GC has had its grace period: one slot per
    // sandbox, the one its owner points at and whose addresses it was given.
    await vi.waitFor(
      async () => {
        const s = await state(kv);
        expect(s.slots.size).toBe(burst.length);
      },
      { timeout: 60_000, interval: 500 },
    );
    const s = await state(kv);
    expect(
      heldAsReplied(
        s,
        burst,
        results.map((r) => r.reply),
      ),
    ).toEqual([]);
    const again = await pool(burst, 64, (p) => allocate(bus, p));
    again.forEach((r, i) => expect(r.addresses).toEqual(results[i]?.reply.addresses));
  }, 180_000);
});
