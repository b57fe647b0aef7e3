import { FamilySchema } from '@dyad/contracts';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { z } from 'zod';

const FamilyMap = z.object({ IPv4: z.string().optional(), IPv6: z.string().optional() });

export const ProcessRecord = z.object({
  name: z.string(),
  pid: z.number().int(),
  /** /proc start time: a pid alone may be reused. */
  startTime: z.number().optional(),
  restarts: z.number().int(),
  log: z.string(),
  /** The netns it runs in, if not the root one. */
  netns: z.string().optional(),
});

export const NodeRecord = z.object({
  name: z.string(),
  netns: z.string(),
  uplink: z.string(),
  addresses: FamilyMap,
  pinDir: z.string(),
  cniSocket: z.string(),
  apiSocket: z.string(),
  conflist: z.string(),
});

export const LabState = z.object({
  version: z.literal(1),
  prefix: z.string(),
  phase: z.enum(['starting', 'ready', 'stopping', 'failed']),
  error: z.string().optional(),
  /** What the supervisor is doing now, for `up` to show. */
  step: z.string().optional(),
  warnings: z.array(z.string()).default([]),
  startedAt: z.string(),
  readyAt: z.string().optional(),
  options: z.object({
    nodes: z.number(),
    ipv4: z.boolean(),
    ipv6: z.boolean(),
    kubelet: z.boolean().optional(),
    tracing: z.boolean().optional(),
  }),
  families: z.array(FamilySchema),
  supervisorPid: z.number().int(),
  supervisorStartTime: z.number().optional(),
  fabricNetns: z.string(),
  fabric: FamilyMap,
  podPools: FamilyMap,
  serviceRange: z.string(),
  pinRoot: z.string(),
  /** Every NATS server's URL, comma-separated, as services get them. */
  natsUrl: z.string().optional(),
  /** The NATS cluster's members (supervised processes of the same names). */
  nats: z
    .array(
      z.object({ name: z.string(), url: z.string(), monitorUrl: z.string(), storeDir: z.string() }),
    )
    .optional(),
  /** The CA that signed nats-server's certificate (clients connect over TLS). */
  natsCa: z.string().optional(),
  /** The directory of every identity's credentials: `<identity>.creds`. */
  natsCreds: z.string().optional(),
  /** Kubelet mode: the `operator` identity's token for the chart's NATS (NATS_TOKEN_FILE). */
  natsToken: z.string().optional(),
  /** Kubelet mode: seconds from \`helm install\` to a ready agent on every node. */
  installSeconds: z.number().optional(),
  apiserver: z.string().optional(),
  /** With `up --tracing`: Jaeger's query API and UI, and where OTLP/HTTP goes. */
  jaeger: z.object({ queryUrl: z.string(), otlpUrl: z.string() }).optional(),
  /** The kube-apiserver's pid now (the supervisor restarts it when it exits) and etcd's URL. */
  apiserverPid: z.number().int().optional(),
  etcdUrl: z.string().optional(),
  kubeconfig: z.string(),
  tls: z.object({ caPath: z.string(), certPath: z.string(), keyPath: z.string() }).optional(),
  nodes: z.array(NodeRecord),
  processes: z.array(ProcessRecord),
});
export type LabStateValue = z.output<typeof LabState>;
export type NodeRecordValue = z.output<typeof NodeRecord>;
export type ProcessRecordValue = z.output<typeof ProcessRecord>;

export function readState(path: string): LabStateValue | undefined {
  if (!existsSync(path)) return undefined;
  try {
    return LabState.parse(JSON.parse(readFileSync(path, 'utf8')));
  } catch {
    return undefined;
  }
}

/** Atomic: readers never see half a file. */
export function writeState(path: string, state: LabStateValue): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(state, null, 2) + '\n');
  renameSync(tmp, path);
}
