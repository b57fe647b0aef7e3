import { Counter } from 'prom-client';
import type { Registry } from 'prom-client';

export interface BootstrapMetrics {
  readonly checks: Counter<'outcome'>;
  readonly created: Counter<'stream'>;
}

export function createBootstrapMetrics(registry: Registry): BootstrapMetrics {
  const registers = [registry];
  return {
    checks: new Counter({
      name: 'dyad_bootstrap_checks_total',
      help: 'Checks of every stream and bucket, by outcome (ok, error)',
      labelNames: ['outcome'],
      registers,
    }),
    created: new Counter({
      name: 'dyad_bootstrap_created_total',
      help: 'Streams (KV buckets as KV_<bucket>) created, the first time and after NATS lost them',
      labelNames: ['stream'],
      registers,
    }),
  };
}
