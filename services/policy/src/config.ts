import { z } from 'zod';
import { NatsEnv, natsSettings } from '@dyad/bus';
import type { NatsSettings } from '@dyad/bus';
import { PolicyConfigError } from './errors.ts';

const Bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

/** The policy service's settings, from the environment. */
const Env = z.object({
  ...NatsEnv,
  DYAD_HEALTH_PORT: z.coerce.number().int().min(0).max(65535).default(9874),
  DYAD_HEALTH_HOST: z.string().min(1).optional(),
  /** Input changes within this window are compiled and published together. */
  DYAD_POLICY_FLUSH_MS: z.coerce.number().int().min(0).max(10_000).default(5),
  /** Full check this often: a from-scratch compile and the stored outputs against the live state. */
  DYAD_POLICY_RESYNC_INTERVAL_S: z.coerce.number().positive().default(300),
  DYAD_POLICY_TOMBSTONE_TTL_S: z.coerce.number().int().min(1).default(86_400),
  /** An identity no pod has used this long is freed. */
  DYAD_POLICY_IDENTITY_GRACE_S: z.coerce.number().min(0).default(600),
  DYAD_POLICY_IDENTITY_GC_INTERVAL_S: z.coerce.number().positive().default(60),
  /** A pod's own node may always reach it and be reached (kubelet probes). */
  DYAD_POLICY_ALLOW_HOST: Bool.default(true),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
});

export interface PolicyConfig {
  readonly nats: NatsSettings;
  /** host undefined: every address of both families. */
  readonly health: { readonly host: string | undefined; readonly port: number };
  readonly flushDelayMs: number;
  readonly resyncIntervalMs: number;
  readonly tombstoneTtl: string;
  readonly identityGraceMs: number;
  readonly identityGcIntervalMs: number;
  readonly allowHost: boolean;
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
}

export function loadConfig(env: Readonly<Record<string, string | undefined>>): PolicyConfig {
  const r = Env.safeParse(env);
  if (!r.success) {
    throw new PolicyConfigError(
      r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
    );
  }
  const e = r.data;
  return {
    nats: natsSettings(e),
    health: { host: e.DYAD_HEALTH_HOST, port: e.DYAD_HEALTH_PORT },
    flushDelayMs: e.DYAD_POLICY_FLUSH_MS,
    resyncIntervalMs: e.DYAD_POLICY_RESYNC_INTERVAL_S * 1000,
    tombstoneTtl: `${e.DYAD_POLICY_TOMBSTONE_TTL_S}s`,
    identityGraceMs: e.DYAD_POLICY_IDENTITY_GRACE_S * 1000,
    identityGcIntervalMs: e.DYAD_POLICY_IDENTITY_GC_INTERVAL_S * 1000,
    allowHost: e.DYAD_POLICY_ALLOW_HOST,
    logLevel: e.LOG_LEVEL,
  };
}
