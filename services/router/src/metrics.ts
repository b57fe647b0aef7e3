import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';

export interface RouterMetrics {
  readonly inputEvents: Counter<'source' | 'op'>;
  readonly published: Counter<'kind'>;
  readonly publishErrors: Counter;
  readonly reconciles: Counter<'outcome'>;
  readonly revision: Gauge;
  readonly nodes: Gauge;
  readonly ipcacheEntries: Gauge;
  readonly flushSeconds: Histogram;
}

export function createRouterMetrics(registry: Registry): RouterMetrics {
  const registers = [registry];
  return {
    inputEvents: new Counter({
      name: 'dyad_router_input_events_total',
      help: 'Input events applied, by source (node, ipam, endpoint, identity) and op',
      labelNames: ['source', 'op'],
      registers,
    }),
    published: new Counter({
      name: 'dyad_router_published_total',
      help: 'Node updates published (one per node and revision), by kind: flush or reconcile',
      labelNames: ['kind'],
      registers,
    }),
    publishErrors: new Counter({
      name: 'dyad_router_publish_errors_total',
      help: 'Flushes or reconciles whose publishes failed; a reconcile follows',
      registers,
    }),
    reconciles: new Counter({
      name: 'dyad_router_reconciles_total',
      help: 'Comparisons of the stored state with the computed one, by outcome',
      labelNames: ['outcome'],
      registers,
    }),
    revision: new Gauge({
      name: 'dyad_router_revision',
      help: 'Last revision handed out',
      registers,
    }),
    nodes: new Gauge({ name: 'dyad_router_nodes', help: 'Nodes with published state', registers }),
    ipcacheEntries: new Gauge({
      name: 'dyad_router_ipcache_entries',
      help: 'Entries in the global ipcache (every node holds them all)',
      registers,
    }),
    flushSeconds: new Histogram({
      name: 'dyad_router_flush_seconds',
      help: 'Time from the first input change of a flush to its last publish acknowledged',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
  };
}
