import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';

export interface IpamMetrics {
  /** Pod addresses per node and family, as of the last record this replica wrote or read. */
  readonly addresses: Gauge<'node' | 'family' | 'state'>;
  readonly allocations: Counter<'outcome'>;
  readonly releases: Counter<'reason'>;
  readonly exhausted: Counter<'family' | 'scope'>;
  readonly conflicts: Counter;
  readonly batchSize: Histogram;
  readonly nodeBlocks: Counter<'family' | 'outcome'>;
  readonly gcRuns: Counter<'outcome'>;
}

export function createIpamMetrics(registry: Registry): IpamMetrics {
  const registers = [registry];
  return {
    addresses: new Gauge({
      name: 'dyad_ipam_addresses',
      help: 'Pod addresses of a node block: state=used or free',
      labelNames: ['node', 'family', 'state'],
      registers,
    }),
    allocations: new Counter({
      name: 'dyad_ipam_allocations_total',
      help: 'Allocate requests answered: outcome=new, repeat, or the error code',
      labelNames: ['outcome'],
      registers,
    }),
    releases: new Counter({
      name: 'dyad_ipam_releases_total',
      help: 'Sandboxes whose addresses were released, by reason',
      labelNames: ['reason'],
      registers,
    }),
    exhausted: new Counter({
      name: 'dyad_ipam_exhausted_total',
      help: 'Allocations refused because a node block (node-block) or the pool (cluster-pool) was full',
      labelNames: ['family', 'scope'],
      registers,
    }),
    conflicts: new Counter({
      name: 'dyad_ipam_write_conflicts_total',
      help: 'Node record writes lost to another replica and redone',
      registers,
    }),
    batchSize: new Histogram({
      name: 'dyad_ipam_batch_size',
      help: 'Requests committed per node record write',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
      registers,
    }),
    nodeBlocks: new Counter({
      name: 'dyad_ipam_node_blocks_total',
      help: 'Node block claims: outcome=claimed, lost (another replica was first), exhausted, released',
      labelNames: ['family', 'outcome'],
      registers,
    }),
    gcRuns: new Counter({
      name: 'dyad_ipam_gc_runs_total',
      help: 'Garbage-collection passes: outcome=ok, skipped (no nodes known), failed',
      labelNames: ['outcome'],
      registers,
    }),
  };
}
