// An ipam replica's decision-making (the Assigner) over the in-memory KV, with a node view, a
// clock and effects the test controls and records; for the unit and randomized tests.
import type { Family } from '@dyad/netaddr';
import type { NodeBlockValue } from '@dyad/contracts';
import { createLogger, createMetrics } from '@dyad/telemetry';
import type { NodeStatus } from '../src/assigner.ts';
import { Assigner } from '../src/assigner.ts';
import type { IpamConfig } from '../src/config.ts';
import { parseIpamConfig } from '../src/config.ts';
import { HeldView } from '../src/held.ts';
import { createIpamMetrics } from '../src/metrics.ts';
import type { IpamMetrics } from '../src/metrics.ts';
import type { NodeRecord } from '../src/record.ts';
import { IpamStore } from '../src/store.ts';
import type { FakeKv } from './fake-kv.ts';

/** What the replicas share besides the bucket: Kubernetes' nodes and the clock. */
export interface World {
  readonly kv: FakeKv;
  readonly config: IpamConfig;
  /** Node name → status; absent: unknown. A status change is seen by every replica at once. */
  readonly nodes: Map<string, NodeStatus>;
  /** When each deleted node was deleted (for the GC's view). */
  readonly deletedAt: Map<string, number>;
  now: number;
}

export interface FakeReplica {
  readonly assigner: Assigner;
  readonly held: HeldView;
  readonly metrics: IpamMetrics;
  /** Records published as assignments (IpamNodeEvent upserts), in order. */
  readonly assigned: NodeRecord[];
  readonly exhausted: { node: string; family: Family; message: string }[];
  /** Nodes whose allocation records were purged from the stream. */
  readonly purged: string[];
  readonly returned: NodeRecord[];
  /** Tells this replica about a held-blocks report, as its consumer would. */
  report(node: string, blocks: readonly NodeBlockValue[], seq: number): Promise<void>;
  /** The replica's view of the nodes, for a GC pass. */
  nodesView(): { nodes: Map<string, { live: boolean; since: number }> };
}

/** Dual-stack pools: 256 IPv4 /24 blocks (198.18.0.0/16), 65536 IPv6 /120 blocks. */
export const DUAL: Readonly<Record<string, string>> = {
  'enable-ipv6': 'true',
  'cluster-pool-ipv4-cidr': '198.18.0.0/16',
  'cluster-pool-ipv6-cidr': 'fd00:d1ad::/104',
};

export function world(kv: FakeKv, raw: Readonly<Record<string, string>> = DUAL): World {
  return {
    kv,
    config: parseIpamConfig(raw),
    nodes: new Map(),
    deletedAt: new Map(),
    now: Date.UTC(2026, 0, 1),
  };
}

export function fakeReplica(
  w: World,
  opts: { nodeGraceMs?: number; orphanGraceMs?: number } = {},
): FakeReplica {
  const held = new HeldView();
  const metrics = createIpamMetrics(createMetrics({ processMetrics: false }));
  const assigned: NodeRecord[] = [];
  const exhausted: FakeReplica['exhausted'] = [];
  const purged: string[] = [];
  const returned: NodeRecord[] = [];
  const assigner = new Assigner({
    store: new IpamStore(w.kv.asKv()),
    config: w.config,
    held,
    node: (name) => ({ status: w.nodes.get(name) ?? 'unknown', uid: `uid-${name}` }),
    effects: {
      assigned: (r) => {
        assigned.push(r);
        return Promise.resolve();
      },
      exhausted: (node, family, message) => {
        exhausted.push({ node, family, message });
      },
      purgeAllocations: (node) => {
        purged.push(node);
        return Promise.resolve();
      },
      returned: (r) => {
        returned.push(r);
        return Promise.resolve();
      },
    },
    metrics,
    logger: createLogger({ service: 'ipam-test', level: 'silent' }),
    now: () => w.now,
    nodeGraceMs: opts.nodeGraceMs ?? 60_000,
    orphanGraceMs: opts.orphanGraceMs ?? 600_000,
  });
  return {
    assigner,
    held,
    metrics,
    assigned,
    exhausted,
    purged,
    returned,
    report: async (node, blocks, seq) => {
      if (!held.apply(node, blocks, seq)) return;
      assigner.repin();
      await assigner.heldReported(node);
    },
    nodesView: () => ({
      nodes: new Map(
        [...w.nodes].flatMap(([n, s]) =>
          s === 'unknown' ? [] : [[n, { live: s === 'live', since: w.deletedAt.get(n) ?? 0 }]],
        ),
      ),
    }),
  };
}
