import { z } from 'zod';
import { NatsEnv, natsSettings } from '@dyad/bus';
import type { ServiceConfig } from '@dyad/service';

const Env = z.object({
  ...NatsEnv,
  DYAD_HEALTH_PORT: z.coerce.number().int().min(0).max(65535).default(9875),
  DYAD_HEALTH_HOST: z.string().min(1).optional(),
  /** Every stream and bucket is checked this often (and after every reconnect). */
  DYAD_BOOTSTRAP_CHECK_INTERVAL_S: z.coerce.number().positive().default(10),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
});

export interface BootstrapConfig extends ServiceConfig {
  readonly checkIntervalMs: number;
}

export class BootstrapConfigError extends Error {
  override name = 'BootstrapConfigError';
}

export function loadConfig(env: Readonly<Record<string, string | undefined>>): BootstrapConfig {
  const r = Env.safeParse(env);
  if (!r.success)
    throw new BootstrapConfigError(
      r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
    );
  const e = r.data;
  return {
    nats: natsSettings(e),
    health: { host: e.DYAD_HEALTH_HOST, port: e.DYAD_HEALTH_PORT },
    checkIntervalMs: e.DYAD_BOOTSTRAP_CHECK_INTERVAL_S * 1000,
    logLevel: e.LOG_LEVEL,
  };
}
