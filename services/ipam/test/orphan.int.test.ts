// GC removes an orphan slot claim (one its owner record does not point at) only after this replica
// has seen it orphaned for the grace period: the record's `at` is the writer's clock, and a claim
// is an orphan for an instant on one path of the allocation protocol.
import type { Bus, KV } from '@dyad/bus';
import { IpamKey } from '@dyad/contracts';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Replica } from './harness.ts';
import {
  DUAL_STACK,
  allocate,
  clientBus,
  ipamKv,
  podRef,
  publishNode,
  publishPod,
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

describe('orphan slot claims', () => {
  let nats: NatsServer;
  let bus: Bus;
  let kv: KV;
  let replica: Replica | undefined;

  beforeAll(async () => {
    nats = await startNats();
    bus = await clientBus(nats.url);
    await publishNode(bus, NODE);
    replica = await startReplica(nats.url, ENV, 'ipam-o1');
    kv = await ipamKv(bus);
  });

  afterAll(async () => {
    await replica?.proc.stop();
    await bus?.close();
    await nats?.stop();
  });

  it("are judged old by this replica's watch of them, not by their writer's clock", async () => {
    const p = podRef(1, NODE, 'o');
    await publishPod(bus, p);
    const got = await allocate(bus, p);
    // A second claim for the same sandbox, its owner pointing elsewhere, stamped by a clock far
    // behind: by `at` alone it is decades old.
    const orphan = IpamKey.slot(NODE, 200);
    await kv.create(
      orphan,
      new TextEncoder().encode(
        JSON.stringify({
          containerId: p.containerId,
          namespace: p.namespace,
          pod: p.pod,
          podUid: p.podUid,
          ips: { IPv4: '198.18.0.202', IPv6: 'fd00:d1ad::ca' },
          at: 1,
        }),
      ),
    );
    // GC passes every half second; for the grace period after it first sees the claim, it waits.
    await new Promise((r) => setTimeout(r, (GRACE_S / 2) * 1000));
    expect((await kv.get(orphan))?.operation).toBe('PUT');
    await vi.waitFor(async () => expect((await kv.get(orphan))?.operation).toBe('DEL'), {
      timeout: 30_000,
      interval: 250,
    });
    // The sandbox's own claim is untouched.
    const s = await state(kv);
    const owner = s.owners.get(IpamKey.owner(NODE, p.containerId));
    const mine = s.slots.get(IpamKey.slot(NODE, owner?.slot ?? -1));
    expect([mine?.ips.IPv4, mine?.ips.IPv6]).toEqual(got.addresses.map((a) => a.address));
  }, 60_000);
});
