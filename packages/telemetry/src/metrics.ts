import { Registry, collectDefaultMetrics } from 'prom-client';

export interface MetricsOptions {
  /** Added as a label to every metric of this registry, e.g. `{ service: 'kube-bridge' }`. */
  readonly defaultLabels?: Readonly<Record<string, string>>;
  /** Process metrics (CPU, memory, event loop, GC). On unless set to false. */
  readonly processMetrics?: boolean;
}

/**
 * One registry per service instance, never prom-client's global one: two services (or two tests)
 * in one process must not share or collide on metric names.
 */
export function createMetrics(opts: MetricsOptions = {}): Registry {
  const registry = new Registry();
  if (opts.defaultLabels !== undefined) registry.setDefaultLabels({ ...opts.defaultLabels });
  if (opts.processMetrics !== false) collectDefaultMetrics({ register: registry });
  return registry;
}
