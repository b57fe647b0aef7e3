// Single-family clusters, configuration changes across restarts, refused configurations and
// exhaustion, each against a fresh nats-server and one real ipam process.
import { RemoteError } from '@dyad/bus';
import type { PayloadOf } from '@dyad/contracts';
import { AddressesExhausted, IPAM_EXHAUSTED_FILTER, IpamKey } from '@dyad/contracts';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Blocks, Cluster, Replica } from './harness.ts';
import {
  FAST_GC,
  assignments,
  grow,
  ipamKv,
  readRecords,
  runUntilExit,
  startCluster,
  startReplica,
} from './harness.ts';

const open: Cluster[] = [];

afterEach(async () => {
  for (const c of open.splice(0)) await c.stop();
});

async function cluster(nodes: string[]): Promise<Cluster> {
  const c = await startCluster(nodes);
  open.push(c);
  return c;
}

/** The node's blocks once its assignment has `count` of them. */
async function blocksOf(c: Cluster, node: string, count: number): Promise<Blocks> {
  return vi.waitFor(
    async () => {
      const b = (await assignments(c.bus)).get(node)?.blocks ?? [];
      if (b.length !== count) throw new Error(`${node} has ${b.length} blocks`);
      return b;
    },
    { timeout: 30_000, interval: 100 },
  );
}

describe('single-family clusters', () => {
  it('IPv4 only (enable-ipv6 left at its default, false): sets of one IPv4 block', async () => {
    const c = await cluster(['n1']);
    c.replicas.push(
      await startReplica(c.nats.url, { ...FAST_GC, DYAD_CLUSTER_POOL_IPV4_CIDR: '198.18.0.0/16' }),
    );
    expect(await blocksOf(c, 'n1', 1)).toEqual([
      { family: 'IPv4', cidr: '198.18.0.0/24', gateway: '198.18.0.1' },
    ]);
    expect(await grow(c.bus, 'n1', 1)).toEqual([
      { family: 'IPv4', cidr: '198.18.0.0/24', gateway: '198.18.0.1' },
      { family: 'IPv4', cidr: '198.18.1.0/24', gateway: '198.18.1.1' },
    ]);
  });

  it('IPv6 only, with /112 blocks carved from a /104 pool', async () => {
    const c = await cluster(['n1']);
    c.replicas.push(
      await startReplica(c.nats.url, {
        ...FAST_GC,
        DYAD_ENABLE_IPV4: 'false',
        DYAD_ENABLE_IPV6: 'true',
        DYAD_CLUSTER_POOL_IPV6_CIDR: 'fd00:6::/104',
        DYAD_CLUSTER_POOL_IPV6_MASK_SIZE: '112',
      }),
    );
    expect(await blocksOf(c, 'n1', 1)).toEqual([
      { family: 'IPv6', cidr: 'fd00:6::/112', gateway: 'fd00:6::1' },
    ]);
  });
});

describe('configuration across restarts', () => {
  it('switching IPv4 on gives every set of every node its IPv4 block; switching IPv6 off while nodes hold IPv6 blocks is refused', async () => {
    const c = await cluster(['n1']);
    const v6only = {
      ...FAST_GC,
      DYAD_ENABLE_IPV4: 'false',
      DYAD_ENABLE_IPV6: 'true',
      DYAD_CLUSTER_POOL_IPV6_CIDR: 'fd00:d1ad::/104',
    };
    const first = await startReplica(c.nats.url, v6only);
    await blocksOf(c, 'n1', 1);
    const two = await grow(c.bus, 'n1', 1);
    expect(two.map((b) => b.family)).toEqual(['IPv6', 'IPv6']);
    await first.proc.stop();

    const dual = {
      ...v6only,
      DYAD_ENABLE_IPV4: 'true',
      DYAD_CLUSTER_POOL_IPV4_CIDR: '198.18.0.0/16',
      DYAD_IPAM_PRIMARY_FAMILY: 'IPv6',
    };
    c.replicas.push(await startReplica(c.nats.url, dual));
    // Taken up at the node's announcement (at start): both sets get an IPv4 block at once.
    const four = await blocksOf(c, 'n1', 4);
    expect(four.map((b) => b.family)).toEqual(['IPv6', 'IPv4', 'IPv6', 'IPv4']);
    expect([four[0]?.cidr, four[2]?.cidr]).toEqual(two.map((b) => b.cidr));
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
  it('an empty pool refuses a set with an error naming family and pool, an event, and no claim left', async () => {
    const c = await cluster(['n1', 'n2', 'n3']);
    const events: PayloadOf<typeof AddressesExhausted>[] = [];
    c.bus.subscribe([AddressesExhausted], IPAM_EXHAUSTED_FILTER, (d) => {
      events.push(d.value);
    });
    // Two IPv4 /30 blocks and plenty of IPv6 ones: two nodes get set 0, the third none.
    c.replicas.push(
      await startReplica(c.nats.url, {
        ...FAST_GC,
        DYAD_ENABLE_IPV6: 'true',
        DYAD_CLUSTER_POOL_IPV4_CIDR: '198.18.0.0/29',
        DYAD_CLUSTER_POOL_IPV4_MASK_SIZE: '30',
        DYAD_CLUSTER_POOL_IPV6_CIDR: 'fd00:d1ad::/104',
      }),
    );
    const pool = 'cluster-pool-ipv4-cidr (198.18.0.0/29)';
    const left = await vi.waitFor(
      () => {
        const e = events.find((x) => x.scope === 'cluster-pool');
        if (e === undefined) throw new Error('no exhausted event yet');
        return e;
      },
      { timeout: 30_000, interval: 100 },
    );
    expect(left).toMatchObject({
      family: 'IPv4',
      message: `no free IPv4 block for node ${left.node} in ${pool}`,
    });
    const [full] = ['n1', 'n2', 'n3'].filter((n) => n !== left.node);
    await blocksOf(c, full as string, 2);
    const kv = await ipamKv(c.bus);
    const claims = async () => (await kv.keys(IpamKey.blockFilter)).sort();
    const before = await claims();
    const err = await grow(c.bus, full as string, 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).code).toBe('exhausted');
    expect((err as RemoteError).message).toContain(
      `no free IPv4 block for node ${full as string} in ${pool}`,
    );
    await vi.waitFor(
      () =>
        expect(events).toContainEqual({
          node: full,
          family: 'IPv4',
          scope: 'cluster-pool',
          message: `no free IPv4 block for node ${full as string} in ${pool}`,
        }),
      { timeout: 10_000, interval: 100 },
    );
    // Its IPv6 block was claimed, then withdrawn with the set.
    expect(await claims()).toEqual(before);
    expect((await readRecords(kv)).get(full as string)?.sets).toHaveLength(1);
    expect((await readRecords(kv)).has(left.node)).toBe(false);
  });
});
