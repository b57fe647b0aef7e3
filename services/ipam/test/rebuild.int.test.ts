// ipam loses its bucket (NATS lost its data; the bucket is recreated empty) while node agents keep
// the blocks they hold. A stand-in agent reports them through @dyad/bus, one before ipam restarts
// and one during its rebuild wait, while a new node is already announced: the records come back
// as they were and the new node gets blocks no agent holds.
import { IPAM_KV_BUCKET, IPAM_NODES_STREAM } from '@dyad/contracts';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import type { Blocks, Cluster } from './harness.ts';
import {
  DUAL_STACK,
  FAST_GC,
  assignments,
  grow,
  ipamKv,
  metricValue,
  publishHeld,
  publishNode,
  readRecords,
  startCluster,
  startReplica,
} from './harness.ts';

const ENV = { ...DUAL_STACK, ...FAST_GC };

describe('rebuild after losing the bucket', () => {
  let c: Cluster;

  beforeAll(async () => {
    c = await startCluster(['n1', 'n2'], ENV, ['ipam-1']);
    return () => c.stop();
  });

  async function blocks(node: string, count: number): Promise<Blocks> {
    return vi.waitFor(
      async () => {
        const b = (await assignments(c.bus)).get(node)?.blocks ?? [];
        if (b.length !== count) throw new Error(`${node} has ${b.length} blocks`);
        return b;
      },
      { timeout: 30_000, interval: 100 },
    );
  }

  it("rebuilds the node records from the agents' reports, and gives a new node other blocks", async () => {
    await blocks('n1', 2);
    const n2 = await blocks('n2', 2);
    const n1 = await grow(c.bus, 'n1', 1);
    expect(n1).toHaveLength(4);
    const before = await readRecords(await ipamKv(c.bus));
    await publishHeld(c.bus, 'n1', n1);

    // NATS loses ipam's data: the bucket and the assignments are gone.
    await c.replicas.pop()?.proc.stop();
    const raw = await connect({ servers: c.nats.url });
    const jsm = await jetstreamManager(raw);
    await jsm.streams.delete(`KV_${IPAM_KV_BUCKET}`);
    await jsm.streams.purge(IPAM_NODES_STREAM);
    await raw.close();
    // A new node is announced before ipam is back, and before n2's agent has re-reported.
    await publishNode(c.bus, 'n3');

    const replica = await startReplica(c.nats.url, { ...ENV, DYAD_IPAM_REBUILD_WAIT_S: '5' });
    c.replicas.push(replica);
    await publishHeld(c.bus, 'n2', n2);

    expect(await blocks('n1', 4)).toEqual(n1);
    expect(await blocks('n2', 2)).toEqual(n2);
    const n3 = await blocks('n3', 2);
    const taken = new Set([...n1, ...n2].map((b) => b.cidr));
    expect(n3.filter((b) => taken.has(b.cidr))).toEqual([]);

    const after = await readRecords(await ipamKv(c.bus));
    for (const n of ['n1', 'n2']) {
      expect(after.get(n)?.sets).toEqual(before.get(n)?.sets);
      expect(after.get(n)?.uid).toBe(`uid-${n}`);
    }
    expect(metricValue(await replica.metrics(), 'dyad_ipam_node_rebuilds_total')).toBe(2);
    expect(metricValue(await replica.metrics(), 'dyad_ipam_rebuild_conflicts_total')).toBe(0);
    // The rebuilt node grows on from its sets.
    const grown = await grow(c.bus, 'n2', 1);
    expect(grown.slice(0, 2)).toEqual(n2);
    expect(grown.slice(2).some((b) => taken.has(b.cidr) || n3.some((x) => x.cidr === b.cidr))).toBe(
      false,
    );
  }, 120_000);
});

describe('the rebuild wait ends once every live node has reported', () => {
  let c: Cluster;

  beforeAll(async () => {
    c = await startCluster(['a1', 'a2'], ENV, ['ipam-1']);
    return () => c.stop();
  });

  async function blocks(node: string, count: number): Promise<Blocks> {
    return vi.waitFor(
      async () => {
        const b = (await assignments(c.bus)).get(node)?.blocks ?? [];
        if (b.length !== count) throw new Error(`${node} has ${b.length} blocks`);
        return b;
      },
      { timeout: 30_000, interval: 100 },
    );
  }

  it("gives no node fresh blocks before its agent's late report, and claims again right after the last one", async () => {
    const a1 = await blocks('a1', 2);
    const a2 = await blocks('a2', 2);

    // NATS loses ipam's data; ipam comes back before either agent has re-reported (as after the
    // whole NATS cluster lost its data, agents retrying with backoff)
    await c.replicas.pop()?.proc.stop();
    const raw = await connect({ servers: c.nats.url });
    const jsm = await jetstreamManager(raw);
    await jsm.streams.delete(`KV_${IPAM_KV_BUCKET}`);
    await jsm.streams.purge(IPAM_NODES_STREAM);
    await raw.close();
    // a wait only the reports can end within this test
    c.replicas.push(await startReplica(c.nats.url, { ...ENV, DYAD_IPAM_REBUILD_WAIT_S: '3600' }));
    await publishHeld(c.bus, 'a2', a2);
    await publishHeld(c.bus, 'a1', a1);

    expect(await blocks('a1', 2)).toEqual(a1);
    expect(await blocks('a2', 2)).toEqual(a2);
    // claims again: a grow needs a new block (it would wait out the hour otherwise)
    const grown = await grow(c.bus, 'a1', 1);
    expect(grown.slice(0, 2)).toEqual(a1);
    expect(grown.slice(2).some((b) => a2.some((x) => x.cidr === b.cidr))).toBe(false);
  }, 120_000);
});
