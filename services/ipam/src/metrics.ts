import { Counter, Gauge } from 'prom-client';
import type { Registry } from 'prom-client';

export interface AddressUsage {
  readonly node: string;
  readonly family: string;
  readonly used: number;
  readonly free: number;
}

export interface IpamMetrics {
  /** Pod addresses per node and family, computed at scrape time from what this replica knows. */
  readonly addresses: Gauge<'node' | 'family' | 'state'>;
  /** Where the address gauge reads from when scraped. */
  setAddressSource(source: () => Iterable<AddressUsage>): void;
  readonly allocations: Counter<'outcome'>;
  readonly releases: Counter<'reason'>;
  readonly exhausted: Counter<'family' | 'scope'>;
  readonly conflicts: Counter<'key'>;
  readonly nodeBlocks: Counter<'family' | 'outcome'>;
  readonly gcRuns: Counter<'outcome'>;
}

export function createIpamMetrics(registry: Registry): IpamMetrics {
  const registers = [registry];
  let source: () => Iterable<AddressUsage> = () => [];
  return {
    addresses: new Gauge({
      name: 'dyad_ipam_addresses',
      help: 'Pod addresses of a node block: state=used or free',
      labelNames: ['node', 'family', 'state'],
      registers,
      collect() {
        this.reset();
        for (const u of source()) {
          this.set({ node: u.node, family: u.family, state: 'used' }, u.used);
          this.set({ node: u.node, family: u.family, state: 'free' }, u.free);
        }
      },
    }),
    setAddressSource(s) {
      source = s;
    },
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
      help: 'Conditional writes that found the key changed (key=slot, owner): lost races, stale hints',
      labelNames: ['key'],
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
