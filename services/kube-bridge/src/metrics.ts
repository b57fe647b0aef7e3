import { Counter, Gauge } from 'prom-client';
import type { Registry } from 'prom-client';

export interface BridgeMetrics {
  readonly published: Counter<'kind' | 'op'>;
  readonly publishErrors: Counter;
  readonly invalidObjects: Counter<'kind'>;
  readonly watchErrors: Counter<'kind'>;
  readonly watchExpiries: Counter<'kind'>;
  readonly reconciled: Counter<'kind' | 'action'>;
  readonly lists: Counter<'kind'>;
  readonly backlog: Gauge;
}

export function createBridgeMetrics(registry: Registry): BridgeMetrics {
  const registers = [registry];
  return {
    published: new Counter({
      name: 'dyad_kube_bridge_published_total',
      help: 'Object events acknowledged by JetStream',
      labelNames: ['kind', 'op'],
      registers,
    }),
    publishErrors: new Counter({
      name: 'dyad_kube_bridge_publish_errors_total',
      help: 'Failed publish attempts (retried)',
      registers,
    }),
    invalidObjects: new Counter({
      name: 'dyad_kube_bridge_invalid_objects_total',
      help: 'Objects refused by their contract and not published',
      labelNames: ['kind'],
      registers,
    }),
    watchErrors: new Counter({
      name: 'dyad_kube_bridge_watch_errors_total',
      help: 'Watch or list failures that led to a relist',
      labelNames: ['kind'],
      registers,
    }),
    watchExpiries: new Counter({
      name: 'dyad_kube_bridge_watch_expired_total',
      help: "Watches whose resourceVersion had expired (410 Gone), each followed by the informer's own relist",
      labelNames: ['kind'],
      registers,
    }),
    reconciled: new Counter({
      name: 'dyad_kube_bridge_reconciled_total',
      help: 'Stream corrections made by reconcile',
      labelNames: ['kind', 'action'],
      registers,
    }),
    lists: new Counter({
      name: 'dyad_kube_bridge_lists_total',
      help: 'Complete lists per kind: start-up, 410 Gone relists, relists after watch failures',
      labelNames: ['kind'],
      registers,
    }),
    backlog: new Gauge({
      name: 'dyad_kube_bridge_backlog',
      help: 'Subjects queued or in flight',
      registers,
    }),
  };
}
