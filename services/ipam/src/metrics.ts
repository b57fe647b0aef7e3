import { Counter, Gauge } from 'prom-client';
import type { Registry } from 'prom-client';

export interface PoolUsage {
  readonly family: string;
  readonly claimed: number;
  readonly free: number;
}

export interface IpamMetrics {
  /** Blocks of each family's pools, claimed or free, as this replica knows them at scrape time. */
  readonly poolBlocks: Gauge<'family' | 'state'>;
  /** Where the pool gauge reads from when scraped. */
  setPoolSource(source: () => Iterable<PoolUsage>): void;
  readonly grows: Counter<'outcome'>;
  readonly exhausted: Counter<'family'>;
  readonly conflicts: Counter<'key'>;
  readonly nodeBlocks: Counter<'family' | 'outcome'>;
  readonly rebuilds: Counter;
  readonly rebuildConflicts: Counter<'family'>;
  readonly legacyKeysPurged: Counter;
  readonly gcRuns: Counter<'outcome'>;
}

export function createIpamMetrics(registry: Registry): IpamMetrics {
  const registers = [registry];
  let source: () => Iterable<PoolUsage> = () => [];
  return {
    poolBlocks: new Gauge({
      name: 'dyad_ipam_pool_blocks',
      help: "Node blocks of a family's pools: state=claimed or free (this replica's view)",
      labelNames: ['family', 'state'],
      registers,
      collect() {
        this.reset();
        for (const u of source()) {
          this.set({ family: u.family, state: 'claimed' }, u.claimed);
          this.set({ family: u.family, state: 'free' }, u.free);
        }
      },
    }),
    setPoolSource(s) {
      source = s;
    },
    grows: new Counter({
      name: 'dyad_ipam_grows_total',
      help: 'Grow requests answered: outcome=added (a set was added), current (repeat), or the error code',
      labelNames: ['outcome'],
      registers,
    }),
    exhausted: new Counter({
      name: 'dyad_ipam_exhausted_total',
      help: 'Block sets refused because a family had no block left in its pools',
      labelNames: ['family'],
      registers,
    }),
    conflicts: new Counter({
      name: 'dyad_ipam_write_conflicts_total',
      help: 'Conditional writes that found the key changed (key=block, node): replicas racing',
      labelNames: ['key'],
      registers,
    }),
    nodeBlocks: new Counter({
      name: 'dyad_ipam_node_blocks_total',
      help: 'Node block claims: outcome=claimed, lost (withdrawn: another replica was first, or the set failed), exhausted, released',
      labelNames: ['family', 'outcome'],
      registers,
    }),
    rebuilds: new Counter({
      name: 'dyad_ipam_node_rebuilds_total',
      help: "Node records re-created from the node agent's held-blocks report (the bucket had none)",
      registers,
    }),
    rebuildConflicts: new Counter({
      name: 'dyad_ipam_rebuild_conflicts_total',
      help: 'Blocks an agent reports holding that another node has claimed: left with that node, never taken',
      labelNames: ['family'],
      registers,
    }),
    legacyKeysPurged: new Counter({
      name: 'dyad_ipam_legacy_keys_purged_total',
      help: 'Legacy slot and owner keys purged once their node agent reported its blocks (or the node was deleted)',
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
