// GC removes an orphan slot claim (one its owner record does not point at), or an owner record
// pointing at a slot it does not hold, only after this replica has seen it so for the grace
// period: a record's `at` is the writer's clock, and on the allocation paths each state holds for
// an instant (an owner is written just before its slot is claimed, and one path claims a slot just
// before pointing the owner at it).
import type { Bus, KV } from '@dyad/bus';
import { IpamKey, IpamKvBucket } from '@dyad/contracts';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Cluster, Replica } from './harness.ts';
import {
  DUAL_STACK,
  allocate,
  ipamKv,
  metricValue,
  podRef,
  publishPod,
  startCluster,
  startReplica,
  state,
} from './harness.ts';

const GRACE_S = 4;
const ENV = {
  ...DUAL_STACK,
  DYAD_IPAM_GC_INTERVAL_S: '0.5',
  DYAD_IPAM_POD_GRACE_S: String(GRACE_S),
  DYAD_IPAM_ABSENT_POD_GRACE_S: '600',
};
const NODE = 'orphan-node';
const enc = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));
/** An owner record pointing at a slot nobody holds, stamped by a clock far behind. */
const STRAY_OWNER = IpamKey.owner(NODE, 'cstray');

describe('orphan slot claims', () => {
  let c: Cluster;
  let bus: Bus;
  let kv: KV;
  let replica: Replica | undefined;

  beforeAll(async () => {
    c = await startCluster([NODE]);
    bus = c.bus;
    // Written before the replica starts, so its first GC pass, which scans owners, sees it.
    await bus.ensureKv([IpamKvBucket]);
    kv = await ipamKv(bus);
    await kv.create(STRAY_OWNER, enc({ slot: 150, podUid: 'uid-stray', at: 1 }));
    replica = await startReplica(c.nats.url, ENV, 'ipam-o1');
    c.replicas.push(replica);
  });

  afterAll(async () => {
    await c?.stop();
  });

  it("are judged old by this replica's watch of them, not by their writer's clock", async () => {
    // Two GC passes, owners scanned in the first: the stray owner, decades old by its `at`, stays.
    await vi.waitFor(
      async () =>
        expect(
          metricValue(await (replica as Replica).metrics(), 'dyad_ipam_gc_runs_total', {
            outcome: 'ok',
          }),
        ).toBeGreaterThanOrEqual(2),
      { timeout: 10_000, interval: 100 },
    );
    expect((await kv.get(STRAY_OWNER))?.operation).toBe('PUT');
    const p = podRef(1, NODE, 'o');
    await publishPod(bus, p);
    const got = await allocate(bus, p);
    // A second claim for the same sandbox, its owner pointing elsewhere, stamped by a clock far
    // behind: by `at` alone it is decades old.
    const orphan = IpamKey.slot(NODE, 200);
    await kv.create(
      orphan,
      enc({
        containerId: p.containerId,
        namespace: p.namespace,
        pod: p.pod,
        podUid: p.podUid,
        ips: { IPv4: '198.18.0.202', IPv6: 'fd00:d1ad::ca' },
        at: 1,
      }),
    );
    // GC passes every half second; for the grace period after it first sees the claim, it waits.
    await new Promise((r) => setTimeout(r, (GRACE_S / 2) * 1000));
    expect((await kv.get(orphan))?.operation).toBe('PUT');
    await vi.waitFor(async () => expect((await kv.get(orphan))?.operation).toBe('DEL'), {
      timeout: 30_000,
      interval: 250,
    });
    // The stray owner goes too, once scanned again after the grace period.
    await vi.waitFor(
      async () => expect((await kv.get(STRAY_OWNER))?.operation ?? 'gone').not.toBe('PUT'),
      {
        timeout: 30_000,
        interval: 250,
      },
    );
    // The sandbox's own claim is untouched.
    const s = await state(kv);
    const owner = s.owners.get(IpamKey.owner(NODE, p.containerId));
    const mine = s.slots.get(IpamKey.slot(NODE, owner?.slot ?? -1));
    expect([mine?.ips.IPv4, mine?.ips.IPv6]).toEqual(got.addresses.map((a) => a.address));
  }, 60_000);
});
