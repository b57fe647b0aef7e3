import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { NatsEnv, natsSettings } from '@dyad/bus';
import type { NatsSettings } from '@dyad/bus';
import type { IpamConfig } from './config.ts';
import { ALL_CONFIG_KEYS, mergeConfigSources, parseIpamConfig } from './config.ts';
import { SettingsError } from './errors.ts';

/**
 * The process settings, from the environment: NATS, health endpoint, GC and rebuild timing. The IPAM keys
 * themselves come from `DYAD_<KEY>` variables or a mounted ConfigMap directory (config.ts).
 */
const seconds = (def: number, min = 0) => z.coerce.number().min(min).default(def);

const Env = z.object({
  ...NatsEnv,
  DYAD_HEALTH_PORT: z.coerce.number().int().min(0).max(65535).default(9872),
  DYAD_HEALTH_HOST: z.string().min(1).optional(),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  DYAD_IPAM_GC_INTERVAL_S: seconds(60, 0.05),
  DYAD_IPAM_NODE_GRACE_S: seconds(600),
  /** At least 30 s: an assigner gives up a claim older than half of it, and a write may take 5 s. */
  DYAD_IPAM_ORPHAN_GRACE_S: seconds(600, 30),
  /**
   * After finding no node record: how long node agents have at most to report their blocks first
   * (the wait ends as soon as every live node's agent has).
   */
  DYAD_IPAM_REBUILD_WAIT_S: seconds(30),
  DYAD_IPAM_CONCURRENCY: z.coerce.number().int().min(1).max(65536).default(64),
});

export interface IpamSettings {
  readonly nats: NatsSettings;
  /** host undefined: every address of both families. */
  readonly health: { readonly host: string | undefined; readonly port: number };
  readonly logLevel: z.output<typeof Env>['LOG_LEVEL'];
  readonly ipam: IpamConfig;
  readonly gcIntervalMs: number;
  readonly nodeGraceMs: number;
  readonly orphanGraceMs: number;
  readonly rebuildWaitMs: number;
  readonly concurrency: number;
}

/** Reads a ConfigMap mount: regular files named after the keys we know; `..data` links are followed. */
export function readConfigDir(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const names = new Set(readdirSync(dir));
  for (const key of ALL_CONFIG_KEYS) {
    if (!names.has(key)) continue;
    const path = join(dir, key);
    if (statSync(path).isFile()) out[key] = readFileSync(path, 'utf8');
  }
  return out;
}

export function loadSettings(env: Readonly<Record<string, string | undefined>>): IpamSettings {
  const r = Env.safeParse(env);
  if (!r.success) {
    throw new SettingsError(
      r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
    );
  }
  const e = r.data;
  // dyad-config as Kubernetes mounts it (one file per key), the directory every service reads
  const dirFiles = e.DYAD_CONFIG_DIR === undefined ? {} : readConfigDir(e.DYAD_CONFIG_DIR);
  return {
    nats: natsSettings(e),
    health: { host: e.DYAD_HEALTH_HOST, port: e.DYAD_HEALTH_PORT },
    logLevel: e.LOG_LEVEL,
    ipam: parseIpamConfig(mergeConfigSources(env, dirFiles)),
    gcIntervalMs: e.DYAD_IPAM_GC_INTERVAL_S * 1000,
    nodeGraceMs: e.DYAD_IPAM_NODE_GRACE_S * 1000,
    orphanGraceMs: e.DYAD_IPAM_ORPHAN_GRACE_S * 1000,
    rebuildWaitMs: e.DYAD_IPAM_REBUILD_WAIT_S * 1000,
    concurrency: e.DYAD_IPAM_CONCURRENCY,
  };
}
