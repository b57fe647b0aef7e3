// Single-family clusters, configuration changes across restarts, refused configurations and
// exhaustion, each against a fresh nats-server and one real ipam process.
import { RemoteError } from '@dyad/bus';
import type { PayloadOf } from '@dyad/contracts';
import { AddressesExhausted, IPAM_NODES_STREAM, IpamNodeEvent, IpamSubject } from '@dyad/contracts';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Cluster, Replica } from './harness.ts';
import { allocate, podRef, runUntilExit, startCluster, startReplica } from './harness.ts';

const open: Cluster[] = [];

afterEach(async () => {
  for (const c of open.splice(0)) await c.stop();
});

async function cluster(nodes: string[]): Promise<Cluster> {
  const c = await startCluster(nodes);
  open.push(c);
  return c;
}

const code = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'ok',
    (e: unknown) => (e instanceof RemoteError ? e.code : String(e)),
  );

describe('single-family clusters', () => {
  it('IPv4 only (enable-ipv6 left at its default, false): one IPv4 address per pod', async () => {
    const c = await cluster(['n1']);
    c.replicas.push(
      await startReplica(c.nats.url, { DYAD_CLUSTER_POOL_IPV4_CIDR: '198.18.0.0/16' }),
    );
    const r = await allocate(c.bus, podRef(1, 'n1'));
    expect(r.addresses).toEqual([
      {
        family: 'IPv4',
        address: '198.18.0.' + r.addresses[0]?.address.split('.')[3],
        cidr: '198.18.0.0/24',
        gateway: '198.18.0.1',
      },
    ]);
    expect(await code(allocate(c.bus, podRef(2, 'n1'), { families: ['IPv6'] }))).toBe(
      'family-disabled',
    );
    expect(await code(allocate(c.bus, podRef(2, 'n1'), { families: ['IPv4', 'IPv6'] }))).toBe(
      'family-disabled',
    );
    const snap = await c.bus.snapshot([IpamNodeEvent], { stream: IPAM_NODES_STREAM });
    expect([...snap.values()][0]?.value.blocks.map((b) => b.family)).toEqual(['IPv4']);
  });

  it('IPv6 only, with /112 blocks carved from a /104 pool', async () => {
    const c = await cluster(['n1']);
    c.replicas.push(
      await startReplica(c.nats.url, {
        DYAD_ENABLE_IPV4: 'false',
        DYAD_ENABLE_IPV6: 'true',
        DYAD_CLUSTER_POOL_IPV6_CIDR: 'fd00:6::/104',
        DYAD_CLUSTER_POOL_IPV6_MASK_SIZE: '112',
      }),
    );
    const r = await allocate(c.bus, podRef(1, 'n1'));
    expect(r.addresses).toHaveLength(1);
    expect(r.addresses[0]).toMatchObject({
      family: 'IPv6',
      cidr: 'fd00:6::/112',
      gateway: 'fd00:6::1',
    });
    expect(await code(allocate(c.bus, podRef(2, 'n1'), { families: ['IPv4'] }))).toBe(
      'family-disabled',
    );
  });
});

describe('configuration across restarts', () => {
  it('switching IPv4 on is taken up; switching IPv6 off while nodes hold IPv6 blocks is refused', async () => {
    const c = await cluster(['n1']);
    const v6only = {
      DYAD_ENABLE_IPV4: 'false',
      DYAD_ENABLE_IPV6: 'true',
      DYAD_CLUSTER_POOL_IPV6_CIDR: 'fd00:d1ad::/104',
    };
    const first = await startReplica(c.nats.url, v6only);
    const p1 = await allocate(c.bus, podRef(1, 'n1'));
    expect(p1.addresses.map((a) => a.family)).toEqual(['IPv6']);
    await first.proc.stop();

    const dual = {
      ...v6only,
      DYAD_ENABLE_IPV4: 'true',
      DYAD_CLUSTER_POOL_IPV4_CIDR: '198.18.0.0/16',
      DYAD_IPAM_PRIMARY_FAMILY: 'IPv6',
    };
    c.replicas.push(await startReplica(c.nats.url, dual));
    const p2 = await allocate(c.bus, podRef(2, 'n1'));
    expect(p2.addresses.map((a) => a.family)).toEqual(['IPv6', 'IPv4']);
    // The sandbox allocated before gets its IPv4 address on the same slot (same low bits).
    const p1again = await allocate(c.bus, podRef(1, 'n1'));
    expect(p1again.addresses[0]).toEqual(p1.addresses[0]);
    const low6 = parseInt(p1.addresses[0]?.address.split(':').at(-1) ?? '', 16);
    // (slot 253, fd00:d1ad::ff, has no IPv4 twin: .255 is the broadcast address)
    expect(p1again.addresses[1]?.address).toBe(low6 < 255 ? `198.18.0.${low6}` : undefined);
    await (c.replicas.pop() as Replica).proc.stop();

    const off = await runUntilExit(c.nats.url, {
      ...dual,
      DYAD_ENABLE_IPV6: 'false',
      DYAD_IPAM_PRIMARY_FAMILY: '',
    });
    expect(off.code).toBe(2);
    expect(off.log).toContain('enable-ipv6 is false, but nodes hold IPv6 blocks');

    const mask = await runUntilExit(c.nats.url, {
      ...dual,
      DYAD_CLUSTER_POOL_IPV4_MASK_SIZE: '25',
    });
    expect(mask.code).toBe(2);
    expect(mask.log).toContain('cluster-pool-ipv4-mask-size is 25, but nodes hold /24 blocks');
  });

  it('an invalid configuration stops the start with the ConfigMap key named', async () => {
    const c = await cluster([]);
    const both = await runUntilExit(c.nats.url, { DYAD_ENABLE_IPV4: 'false' });
    expect(both.code).toBe(2);
    expect(both.log).toContain('enable-ipv4 and enable-ipv6 are both false');
    const wrong = await runUntilExit(c.nats.url, {
      DYAD_CLUSTER_POOL_IPV4_CIDR: '198.18.0.0/16 fd00::/104',
    });
    expect(wrong.code).toBe(2);
    expect(wrong.log).toContain('cluster-pool-ipv4-cidr: fd00::/104 is an IPv6 CIDR');
    const overlap = await runUntilExit(c.nats.url, {
      DYAD_CLUSTER_POOL_IPV4_CIDR: '198.18.0.0/16 198.18.128.0/17',
    });
    expect(overlap.log).toContain('cluster-pool-ipv4-cidr: 198.18.128.0/17 overlaps 198.18.0.0/16');
  });
});

describe('exhaustion', () => {
  it('a full node block and an empty pool are errors naming node and family, with events', async () => {
    const c = await cluster(['n1', 'n2', 'n3']);
    const events: PayloadOf<typeof AddressesExhausted>[] = [];
    c.bus.subscribe([AddressesExhausted], `${IpamSubject.events}.exhausted`, (d) => {
      events.push(d.value);
    });
    // Two /30 blocks: two nodes get one, each holding one pod; the third node gets none.
    c.replicas.push(
      await startReplica(c.nats.url, {
        DYAD_CLUSTER_POOL_IPV4_CIDR: '198.18.0.0/29',
        DYAD_CLUSTER_POOL_IPV4_MASK_SIZE: '30',
      }),
    );
    const got = await Promise.all(
      ['n1', 'n2', 'n3'].map((n) => code(allocate(c.bus, podRef(1, n)))),
    );
    expect([...got].sort()).toEqual(['exhausted', 'ok', 'ok']);
    const full = ['n1', 'n2', 'n3'].filter((_, i) => got[i] === 'ok')[0] as string;
    const err = await allocate(c.bus, podRef(2, full)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).code).toBe('exhausted');
    expect((err as RemoteError).message).toMatch(
      new RegExp(`node ${full} .*IPv4 block 198\\.18\\.0\\.[04]/30 is full`),
    );
    await vi.waitFor(
      () => {
        expect(
          events.some((e) => e.node === full && e.family === 'IPv4' && e.scope === 'node-block'),
        ).toBe(true);
        expect(events.some((e) => e.family === 'IPv4' && e.scope === 'cluster-pool')).toBe(true);
      },
      { timeout: 30_000, interval: 100 },
    );
  });
});
