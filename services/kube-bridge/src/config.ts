import { hostname } from 'node:os';
import { z } from 'zod';
import { NatsEnv, natsSettings } from '@dyad/bus';
import type { NatsSettings } from '@dyad/bus';

/** kube-bridge's settings, from the environment (the Deployment sets them from the ConfigMap). */
const Env = z.object({
  KUBECONFIG: z.string().min(1).optional(),
  ...NatsEnv,
  DYAD_HEALTH_PORT: z.coerce.number().int().min(0).max(65535).default(9871),
  DYAD_HEALTH_HOST: z.string().min(1).optional(),
  DYAD_RESYNC_INTERVAL_S: z.coerce.number().positive().default(300),
  DYAD_TOMBSTONE_TTL_S: z.coerce.number().int().min(1).default(86_400),
  /** Warning Events on NetworkPolicies Dyad does not enforce as written (needs RBAC to create Events). */
  DYAD_KUBE_BRIDGE_EVENTS: z.enum(['true', 'false']).default('false'),
  /** The Events' reportingInstance: the pod's name in a cluster. */
  POD_NAME: z.string().min(1).optional(),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
});

export interface BridgeConfig {
  readonly kubeconfig: string | undefined;
  readonly nats: NatsSettings;
  /** host undefined: every address of both families. */
  readonly health: { readonly host: string | undefined; readonly port: number };
  readonly resyncIntervalMs: number;
  readonly tombstoneTtlMs: number;
  readonly logLevel: z.output<typeof Env>['LOG_LEVEL'];
  /** The reportingInstance of Events, when kube-bridge reports policy problems as Events. */
  readonly events: { readonly instance: string } | undefined;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function loadConfig(env: Readonly<Record<string, string | undefined>>): BridgeConfig {
  const r = Env.safeParse(env);
  if (!r.success) {
    throw new ConfigError(
      r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
    );
  }
  const e = r.data;
  return {
    kubeconfig: e.KUBECONFIG,
    nats: natsSettings(e),
    health: { host: e.DYAD_HEALTH_HOST, port: e.DYAD_HEALTH_PORT },
    resyncIntervalMs: e.DYAD_RESYNC_INTERVAL_S * 1000,
    tombstoneTtlMs: e.DYAD_TOMBSTONE_TTL_S * 1000,
    logLevel: e.LOG_LEVEL,
    events:
      e.DYAD_KUBE_BRIDGE_EVENTS === 'true'
        ? { instance: e.POD_NAME ?? `kube-bridge-${hostname()}` }
        : undefined,
  };
}
