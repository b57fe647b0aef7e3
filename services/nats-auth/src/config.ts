import { z } from 'zod';
import { NatsEnv } from '@dyad/bus';

/** dyad-nats-auth's settings, from the environment (the chart sets them). */
const Env = z.object({
  KUBECONFIG: z.string().min(1).optional(),
  NATS_URL: NatsEnv.NATS_URL,
  NATS_CA: NatsEnv.NATS_CA,
  /** The release namespace (the pod's, from the downward API). */
  DYAD_NATS_AUTH_NAMESPACE: z.string().min(1),
  DYAD_NATS_AUTH_SECRET: z.string().min(1).default('dyad-nats-auth'),
  DYAD_NATS_AUTH_AUDIENCE: z.string().min(1).default('dyad-nats'),
  DYAD_HEALTH_PORT: z.coerce.number().int().min(0).max(65535).default(9875),
  DYAD_HEALTH_HOST: z.string().min(1).optional(),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
});

export interface NatsAuthConfig {
  readonly kubeconfig: string | undefined;
  readonly servers: readonly string[];
  readonly caFile: string | undefined;
  readonly namespace: string;
  readonly secretName: string;
  readonly audience: string;
  readonly health: { readonly host: string | undefined; readonly port: number };
  readonly logLevel: z.output<typeof Env>['LOG_LEVEL'];
}

export class NatsAuthConfigError extends Error {
  override readonly name = 'NatsAuthConfigError';
}

export function loadConfig(env: Readonly<Record<string, string | undefined>>): NatsAuthConfig {
  const r = Env.safeParse(env);
  if (!r.success) {
    throw new NatsAuthConfigError(
      r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
    );
  }
  const e = r.data;
  return {
    kubeconfig: e.KUBECONFIG,
    servers: e.NATS_URL.split(',').map((s) => s.trim()),
    caFile: e.NATS_CA,
    namespace: e.DYAD_NATS_AUTH_NAMESPACE,
    secretName: e.DYAD_NATS_AUTH_SECRET,
    audience: e.DYAD_NATS_AUTH_AUDIENCE,
    health: { host: e.DYAD_HEALTH_HOST, port: e.DYAD_HEALTH_PORT },
    logLevel: e.LOG_LEVEL,
  };
}
