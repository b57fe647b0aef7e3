import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DyadConfig, DyadConfigKey } from '@dyad/contracts';
import { z } from 'zod';
import { ConfigFileError } from './errors.ts';

/**
 * The environment variables every service reads to reach NATS, defined once. A service spreads
 * `NatsEnv` into its own zod schema and turns the parsed values into `BusOptions` fields with
 * `natsSettings`.
 */
export const NatsEnv = {
  /** One or more URLs, comma-separated. */
  NATS_URL: z.string().min(1).default('nats://127.0.0.1:4222'),
  /**
   * This identity's credentials: a file holding its NKey seed (`<identity>.creds`, see
   * testbed's credsFileText). Required where dyad-config's `environment` is `production`.
   */
  NATS_CREDS: z.string().min(1).optional(),
  /**
   * Instead of NATS_CREDS: a file holding a token for nats-server's auth callout (a projected
   * Kubernetes ServiceAccount token; read again on every reconnect, as the kubelet rotates it),
   * with NATS_IDENTITY, the identity the callout gives it (its inbox prefix).
   */
  NATS_TOKEN_FILE: z.string().min(1).optional(),
  NATS_IDENTITY: z.string().min(1).optional(),
  /** The CA that signed the servers' certificates: connects over TLS, verifying the server. */
  NATS_CA: z.string().min(1).optional(),
  NATS_USER: z.string().min(1).optional(),
  NATS_PASSWORD: z.string().min(1).optional(),
  NATS_TOKEN: z.string().min(1).optional(),
  /** `0` turns off write coalescing (see the README): for comparing, or if it ever misbehaves. */
  DYAD_NATS_COALESCE: z.enum(['0', '1']).default('1'),
  /**
   * The mounted dyad-config ConfigMap (the chart sets `/etc/dyad/config`): its
   * `jetstream-replicas` is the replica count of the streams and buckets this process declares.
   * Unset (tests, the lab's single server): one replica.
   */
  DYAD_CONFIG_DIR: z.string().min(1).optional(),
};

export interface NatsSettings {
  readonly servers: readonly string[];
  readonly credsFile?: string;
  readonly tokenFile?: string;
  readonly identity?: string;
  readonly caFile?: string;
  readonly user?: string;
  readonly pass?: string;
  readonly token?: string;
  readonly coalesceWrites: boolean;
  /** Replicas of every stream and KV bucket this process creates (dyad-config's jetstream-replicas). */
  readonly streamReplicas: number;
}

/**
 * dyad-config's `jetstream-replicas` from the mounted directory, checked by the same schema the
 * chart's ConfigMap is checked with. The chart always renders the key, so a missing file is an
 * error rather than a silent single replica.
 */
export function readStreamReplicas(configDir: string): number {
  const key = DyadConfigKey.jetstreamReplicas;
  const path = join(configDir, key);
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch (cause) {
    throw new ConfigFileError(`cannot read ${path}`, { cause });
  }
  const r = DyadConfig.shape[key].safeParse(text);
  if (!r.success) {
    throw new ConfigFileError(
      `${path}: '${text}' is ${r.error.issues.map((i) => i.message).join('; ')}`,
    );
  }
  return Number(r.data);
}

/**
 * Whether dyad-config forbids connecting without credentials: its `environment` says
 * `production`.
 */
export function requiresCredentials(configDir: string): boolean {
  const path = join(configDir, DyadConfigKey.environment);
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch {
    return false;
  }
  return text === 'production';
}

export function natsSettings(e: {
  readonly NATS_URL: string;
  readonly NATS_CREDS?: string | undefined;
  readonly NATS_TOKEN_FILE?: string | undefined;
  readonly NATS_IDENTITY?: string | undefined;
  readonly NATS_CA?: string | undefined;
  readonly NATS_USER?: string | undefined;
  readonly NATS_PASSWORD?: string | undefined;
  readonly NATS_TOKEN?: string | undefined;
  readonly DYAD_NATS_COALESCE?: '0' | '1' | undefined;
  readonly DYAD_CONFIG_DIR?: string | undefined;
}): NatsSettings {
  if (
    !e.NATS_CREDS &&
    !e.NATS_TOKEN_FILE &&
    e.DYAD_CONFIG_DIR !== undefined &&
    requiresCredentials(e.DYAD_CONFIG_DIR)
  ) {
    throw new ConfigFileError(
      `neither NATS_CREDS nor NATS_TOKEN_FILE is set: ${join(e.DYAD_CONFIG_DIR, DyadConfigKey.environment)} says production, where connecting without credentials is refused`,
    );
  }
  if (e.NATS_TOKEN_FILE && !e.NATS_IDENTITY) {
    throw new ConfigFileError('NATS_TOKEN_FILE is set without NATS_IDENTITY (its inbox prefix)');
  }
  return {
    servers: e.NATS_URL.split(',').map((s) => s.trim()),
    ...(e.NATS_CREDS ? { credsFile: e.NATS_CREDS } : {}),
    ...(e.NATS_TOKEN_FILE ? { tokenFile: e.NATS_TOKEN_FILE } : {}),
    ...(e.NATS_IDENTITY ? { identity: e.NATS_IDENTITY } : {}),
    ...(e.NATS_CA ? { caFile: e.NATS_CA } : {}),
    ...(e.NATS_USER ? { user: e.NATS_USER } : {}),
    ...(e.NATS_PASSWORD ? { pass: e.NATS_PASSWORD } : {}),
    ...(e.NATS_TOKEN ? { token: e.NATS_TOKEN } : {}),
    coalesceWrites: e.DYAD_NATS_COALESCE !== '0',
    streamReplicas: e.DYAD_CONFIG_DIR === undefined ? 1 : readStreamReplicas(e.DYAD_CONFIG_DIR),
  };
}
