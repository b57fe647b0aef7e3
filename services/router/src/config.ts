import { z } from 'zod';
import { NatsEnv, natsSettings } from '@dyad/bus';
import type { NatsSettings } from '@dyad/bus';
import { RouterConfigError } from './errors.ts';

/** The router's settings, from the environment. */
const Env = z.object({
  ...NatsEnv,
  DYAD_HEALTH_PORT: z.coerce.number().int().min(0).max(65535).default(9873),
  DYAD_HEALTH_HOST: z.string().min(1).optional(),
  /** Input changes within this window are published together. */
  DYAD_ROUTER_FLUSH_MS: z.coerce.number().int().min(0).max(10_000).default(5),
  /** Full comparison of the stored state with the computed one, this often. */
  DYAD_ROUTER_RESYNC_INTERVAL_S: z.coerce.number().positive().default(300),
  DYAD_ROUTER_TOMBSTONE_TTL_S: z.coerce.number().int().min(1).default(86_400),
  DYAD_ROUTER_PUBLISH_CONCURRENCY: z.coerce.number().int().min(1).max(10_000).default(256),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
});

export interface RouterConfig {
  readonly nats: NatsSettings;
  /** host undefined: every address of both families. */
  readonly health: { readonly host: string | undefined; readonly port: number };
  readonly flushDelayMs: number;
  readonly resyncIntervalMs: number;
  readonly tombstoneTtl: string;
  readonly publishConcurrency: number;
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
}

export function loadConfig(env: Readonly<Record<string, string | undefined>>): RouterConfig {
  const r = Env.safeParse(env);
  if (!r.success) {
    throw new RouterConfigError(
      r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
    );
  }
  const e = r.data;
  return {
    nats: natsSettings(e),
    health: { host: e.DYAD_HEALTH_HOST, port: e.DYAD_HEALTH_PORT },
    flushDelayMs: e.DYAD_ROUTER_FLUSH_MS,
    resyncIntervalMs: e.DYAD_ROUTER_RESYNC_INTERVAL_S * 1000,
    tombstoneTtl: `${e.DYAD_ROUTER_TOMBSTONE_TTL_S}s`,
    publishConcurrency: e.DYAD_ROUTER_PUBLISH_CONCURRENCY,
    logLevel: e.LOG_LEVEL,
  };
}
