import { z } from 'zod';

/**
 * The environment variables every service reads to reach NATS, defined once. A service spreads
 * `NatsEnv` into its own zod schema and turns the parsed values into `BusOptions` fields with
 * `natsSettings`.
 */
export const NatsEnv = {
  /** One or more URLs, comma-separated. */
  NATS_URL: z.string().min(1).default('nats://127.0.0.1:4222'),
  /** A `.creds` file (JWT + NKey seed): the per-service accounts a later issue turns on. */
  NATS_CREDS: z.string().min(1).optional(),
  NATS_USER: z.string().min(1).optional(),
  NATS_PASSWORD: z.string().min(1).optional(),
  NATS_TOKEN: z.string().min(1).optional(),
  /** `0` turns off write coalescing (see the README): for comparing, or if it ever misbehaves. */
  DYAD_NATS_COALESCE: z.enum(['0', '1']).default('1'),
};

export interface NatsSettings {
  readonly servers: readonly string[];
  readonly credsFile?: string;
  readonly user?: string;
  readonly pass?: string;
  readonly token?: string;
  readonly coalesceWrites: boolean;
}

export function natsSettings(e: {
  readonly NATS_URL: string;
  readonly NATS_CREDS?: string | undefined;
  readonly NATS_USER?: string | undefined;
  readonly NATS_PASSWORD?: string | undefined;
  readonly NATS_TOKEN?: string | undefined;
  readonly DYAD_NATS_COALESCE?: '0' | '1' | undefined;
}): NatsSettings {
  return {
    servers: e.NATS_URL.split(',').map((s) => s.trim()),
    ...(e.NATS_CREDS ? { credsFile: e.NATS_CREDS } : {}),
    ...(e.NATS_USER ? { user: e.NATS_USER } : {}),
    ...(e.NATS_PASSWORD ? { pass: e.NATS_PASSWORD } : {}),
    ...(e.NATS_TOKEN ? { token: e.NATS_TOKEN } : {}),
    coalesceWrites: e.DYAD_NATS_COALESCE !== '0',
  };
}
