import { z } from 'zod';
import { EndpointState } from './agent.ts';
import { Cidr, FamilySchema, IpAddress, Ipv4Address, Ipv6Address } from './family.ts';
import { FlowEvent } from './flow.ts';
import { RouterServiceEntry } from './router.ts';

/**
 * The node agent's read-only HTTP API: JSON over HTTP GET on a unix socket (mode 0600, no TCP
 * port), served by services/datapath-agent/src/api.ts and read by the `dyad` CLI. Both ends
 * validate against these schemas: the agent before it sends, the CLI when it reads, so a change
 * on one side that the other does not know fails loudly instead of printing `-` in a table.
 *
 * Compatibility: as for messages, adding an optional field is compatible (readers strip what
 * they do not know); anything else is a new path under the next version (`/v2/...`).
 */

/** Where a node's agent serves the API unless told otherwise (DYAD_API_SOCKET on the agent). */
export const AGENT_API_SOCKET = '/run/dyad/agent.sock';

const Count = z.number().int().min(0);
const U32 = z.number().int().min(0).max(0xffffffff);
const Mac = z.string().regex(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/, 'a MAC address, lower case');

/** `/v1/version`: what answers, for `dyad version` and for checking `--node`. */
export const AgentVersion = z.object({
  /** The agent's release (its package version). */
  version: z.string().min(1),
  /** The API version this agent serves. */
  api: z.literal('v1'),
  /** The node this agent runs on (DYAD_NODE_NAME). */
  node: z.string().min(1),
  /** The JavaScript runtime, e.g. `v24.1.0`. */
  runtime: z.string().min(1),
});

/** Writes one map mirror made since the agent started (services/datapath-agent mirror.ts). */
export const MapWriteStats = z.object({
  syscalls: Count,
  written: Count,
  deleted: Count,
  unchanged: Count,
});

/** What the agent's restore at start-up found and did. */
export const RestoreReport = z.object({
  kept: Count,
  replumbed: Count,
  removed: Count,
  rolledBack: Count,
  staleLinks: Count,
  reattached: Count,
});

/** `/v1/status`: what `dyad status` shows. */
export const AgentStatus = z.object({
  node: z.string().min(1),
  ready: z.boolean(),
  /** Why not ready, or `ready`. */
  details: z.string(),
  uptimeS: z.number().min(0),
  nats: z.object({ connected: z.boolean(), servers: z.array(z.string()) }),
  /** Per family: whether this node has an IPAM block, its CIDR and gateway. */
  families: z.array(
    z.object({
      family: FamilySchema,
      enabled: z.boolean(),
      cidr: Cidr.optional(),
      gateway: IpAddress.optional(),
    }),
  ),
  endpoints: z.object({ ready: Count, pending: Count }),
  maps: z.array(z.object({ name: z.string().min(1), entries: Count, maxEntries: Count })),
  /** Per map mirror (`endpoints`, `ipcache`, `policy`). */
  writes: z.record(z.string(), MapWriteStats),
  restore: RestoreReport.optional(),
  /**
   * The flow exporter since start. Every event the datapath produced is in exactly one of:
   * published, droppedQueue, droppedUnsent, or (never read) ringLost.
   */
  flows: z
    .object({
      received: Count,
      published: Count,
      /** Discarded by the agent's bounded queue: it fell behind the ring buffer. */
      droppedQueue: Count,
      /** Not sent: NATS away or slow to confirm. */
      droppedUnsent: Count,
      /** The datapath found the ring buffer full (DY_REASON_EVENT_LOST counters). */
      ringLost: Count,
      /** Flows a slow `dyad monitor` client missed (not part of the sum above). */
      missedByMonitors: Count,
    })
    .optional(),
  cniSocket: z.string(),
  pinDir: z.string(),
  /**
   * Entries of the node's maps that differ from its desired state (missing, extra or another
   * value), per map, read from the kernel: 0 everywhere when the maps equal what the endpoints,
   * the router's and the policy service's state call for. Briefly non-zero after a change (the
   * agent coalesces writes); lasting drift is a lost write or a stale entry.
   */
  drift: z
    .object({ endpoints: Count, ipcache: Count, policy: Count, policyCidr: Count })
    .optional(),
});

/** One entry of `/v1/endpoints`: the endpoint as reported on NATS plus agent-local facts. */
export const AgentEndpoint = EndpointState.extend({
  /** `adding` until the CNI ADD has wired everything, then `ready`. */
  phase: z.enum(['adding', 'ready']),
  gateway4: Ipv4Address.optional(),
  gateway6: Ipv6Address.optional(),
});

/** One entry of dy_endpoints as the kernel holds it (bpf/include/dyad/endpoints.h). */
export const BpfEndpointEntry = z.object({
  address: IpAddress,
  ifindex: U32,
  endpointId: U32,
  identity: U32,
  /** Bits: 1 enforce ingress, 2 enforce egress. */
  flags: U32,
  mac: Mac,
  nodeMac: Mac,
});

/** One entry of the dy_ipcache LPM map. */
export const BpfIpcacheEntry = z.object({
  prefix: Cidr,
  identity: U32,
  nodeId: U32,
  /** The hosting node's address, for prefixes on other nodes. */
  nodeAddress: IpAddress.optional(),
  /** Bit 1: on this node. */
  flags: U32,
});

/** One entry of the dy_policy LPM map. */
export const BpfPolicyEntry = z.object({
  endpointId: U32,
  identity: U32,
  direction: z.enum(['ingress', 'egress']),
  proto: z.number().int().min(0).max(255),
  port: z.number().int().min(0).max(65535),
  portPrefixLen: z.number().int().min(0).max(16),
  action: U32,
  ruleId: U32,
});

/** One flow of dy_conntrack; `expiresInS` is from the moment of the request (negative: due). */
export const BpfCtEntry = z.object({
  src: IpAddress,
  dst: IpAddress,
  sport: z.number().int().min(0).max(65535),
  dport: z.number().int().min(0).max(65535),
  proto: z.number().int().min(0).max(255),
  direction: z.enum(['ingress', 'egress']),
  expiresInS: z.number(),
  packets: Count,
  bytes: Count,
  srcIdentity: U32,
  /** Bits: 1 seen reply, 2 closing. */
  flags: U32,
});

/** One drop counter of dy_metrics, summed over CPUs. */
export const BpfMetricsEntry = z.object({
  reason: U32,
  /** A name when the datapath's direction number is known, else the number. */
  direction: z.union([z.enum(['egress', 'ingress', 'node']), U32]),
  /** 4, 6, or 0 for non-IP. */
  family: z.number().int().min(0),
  packets: Count,
  bytes: Count,
});

/** One frontend of dy_lb_services with what its Maglev table (dy_lb_maglev) holds. */
export const BpfLbEntry = z.object({
  address: IpAddress,
  port: z.number().int().min(1).max(65535),
  protocol: z.enum(['TCP', 'UDP']),
  /** The frontend id (its Maglev table's key). */
  id: U32,
  /** Ready backends the datapath counts; 0 refuses at once. */
  backends: Count,
  affinityTimeoutS: U32,
  /** Bits: 1 sessionAffinity ClientIP, 2 NodePort (a node address), 4 externalTrafficPolicy Local. */
  flags: U32,
  /** The backends of the Maglev table, each with its share of the table's slots. */
  slots: z.array(
    z.object({
      backendId: U32,
      /** Absent when the table names an id dy_lb_backends does not hold. */
      address: IpAddress.optional(),
      port: z.number().int().min(0).max(65535).optional(),
      /** Bits: 1 terminating. */
      backendFlags: U32.optional(),
      slots: Count,
    }),
  ),
});

/** The body of every answer that is not 200. */
export const AgentApiError = z.object({
  error: z.string(),
  /** With 404: the paths there are. */
  paths: z.array(z.string()).optional(),
});

/** One GET path of the API and the schema of its 200 answer. */
export interface AgentApiRoute<S extends z.ZodType = z.ZodType> {
  readonly path: string;
  readonly schema: S;
  readonly description: string;
}

function route<S extends z.ZodType>(
  path: string,
  schema: S,
  description: string,
): AgentApiRoute<S> {
  return { path, schema, description };
}

/** Every path of the API. The `/v1/bpf/*` paths read the kernel maps, not the agent's mirror. */
export const AgentApi = {
  version: route('/v1/version', AgentVersion, "the agent's release, API version and node"),
  status: route('/v1/status', AgentStatus, 'health, families, NATS, map fill levels'),
  endpoints: route('/v1/endpoints', z.array(AgentEndpoint), 'the pods this agent wired up'),
  bpfEndpoints: route('/v1/bpf/endpoints', z.array(BpfEndpointEntry), 'dy_endpoints'),
  bpfIpcache: route('/v1/bpf/ipcache', z.array(BpfIpcacheEntry), 'dy_ipcache'),
  bpfPolicy: route('/v1/bpf/policy', z.array(BpfPolicyEntry), 'dy_policy'),
  /** Takes `?limit=N` (default 10000). */
  bpfCt: route('/v1/bpf/ct', z.array(BpfCtEntry), 'dy_conntrack, at most ?limit=N flows'),
  bpfMetrics: route('/v1/bpf/metrics', z.array(BpfMetricsEntry), 'dy_metrics drop counters'),
  services: route(
    '/v1/services',
    z.array(RouterServiceEntry),
    "the router's Services for this node, as the agent follows them",
  ),
  bpfLb: route('/v1/bpf/lb', z.array(BpfLbEntry), 'dy_lb_services with their Maglev tables'),
} as const;

export type AgentApiName = keyof typeof AgentApi;

/**
 * `/v1/monitor`: a stream, not a GET answer: one flow (`io.dyad.flow.v1` payload) per line as
 * the agent drains the datapath, until the client closes; `dyad monitor` reads it.
 */
export const AgentMonitor = {
  path: '/v1/monitor',
  line: FlowEvent.schema,
  description: "this node's flows as they happen, one JSON object per line",
} as const;
/** The validated body of a 200 answer on one path. */
export type AgentApiBody<K extends AgentApiName> = z.output<(typeof AgentApi)[K]['schema']>;

export type AgentVersionValue = z.output<typeof AgentVersion>;
export type AgentStatusValue = z.output<typeof AgentStatus>;
export type AgentEndpointValue = z.output<typeof AgentEndpoint>;
export type BpfEndpointEntryValue = z.output<typeof BpfEndpointEntry>;
export type BpfIpcacheEntryValue = z.output<typeof BpfIpcacheEntry>;
export type BpfPolicyEntryValue = z.output<typeof BpfPolicyEntry>;
export type BpfCtEntryValue = z.output<typeof BpfCtEntry>;
export type BpfMetricsEntryValue = z.output<typeof BpfMetricsEntry>;
export type BpfLbEntryValue = z.output<typeof BpfLbEntry>;
export type MapWriteStatsValue = z.output<typeof MapWriteStats>;
export type RestoreReportValue = z.output<typeof RestoreReport>;
export type AgentApiErrorValue = z.output<typeof AgentApiError>;
