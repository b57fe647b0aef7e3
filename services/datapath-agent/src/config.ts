import { join } from 'node:path';
import { z } from 'zod';
import { NatsEnv, natsSettings } from '@dyad/bus';
import type { NatsSettings } from '@dyad/bus';
import { ConfigError } from './errors.ts';

const Bool = z.enum(['0', '1', 'true', 'false']).transform((v) => v === '1' || v === 'true');

/**
 * The agent's settings, from the environment (the DaemonSet sets them; the lab and tests set
 * per-node paths so several agents share one machine).
 */
const Env = z.object({
  /** This node's Kubernetes name: the IPAM owner and the subject token of everything it reads. */
  DYAD_NODE_NAME: z.string().min(1),
  /** Numeric node id written into local ipcache entries. */
  DYAD_NODE_ID: z.coerce.number().int().min(0).max(0xffffffff).default(0),
  ...NatsEnv,
  /** Where dyad-cni connects (the conflist's `agentSocket` must say the same). */
  DYAD_CNI_SOCKET: z.string().min(1).default('/run/dyad/cni.sock'),
  /** The read-only API for the `dyad` CLI. */
  DYAD_API_SOCKET: z.string().min(1).default('/run/dyad/agent.sock'),
  /** bpffs directory of this node's pinned maps; defaults to /sys/fs/bpf/dyad/<node>. */
  DYAD_PIN_DIR: z.string().min(1).optional(),
  /** Directory of the state file (endpoints and the node's pod address allocations). */
  DYAD_STATE_DIR: z.string().min(1).default('/var/lib/dyad/agent'),
  /** The datapath object; defaults to bpf/build/datapath.o of this repository. */
  DYAD_BPF_OBJECT: z.string().min(1).optional(),
  /** Host-side veth names are this prefix plus a hash of the attachment (15 bytes in all). */
  DYAD_VETH_PREFIX: z
    .string()
    .regex(/^[a-z][a-z0-9]{0,5}$/, 'at most 6 lowercase letters and digits')
    .default('dy'),
  /**
   * The conflist the node's runtime reads (the chart's install-cni wrote it): removed first when
   * the agent is told to uninstall, so no new pod gets Dyad. Unset: the agent removes none.
   */
  DYAD_CNI_CONF_FILE: z.string().min(1).optional(),
  /**
   * Removed last at uninstall, comma-separated: the plugin binary, the agent's directories. A
   * directory that is a mount point of the agent's container is emptied.
   */
  DYAD_UNINSTALL_PATHS: z.string().default(''),
  /** Interfaces to the other nodes: dy_from_netdev is attached to their tc ingress. */
  DYAD_UPLINKS: z.string().default(''),
  /** Identity of an endpoint until the router names its own (reserved "cluster"). */
  DYAD_INIT_IDENTITY: z.coerce.number().int().min(1).max(0xffffffff).default(3),
  /** Turn on IPv4/IPv6 forwarding in the agent's netns (the datapath's FIB lookups need it). */
  DYAD_ENABLE_FORWARDING: Bool.default(true),
  /** Desired-state changes are written once they have been quiet this long... */
  DYAD_COALESCE_MS: z.coerce.number().int().min(0).max(1000).default(10),
  /** ...but at most this long after the first of them. */
  DYAD_COALESCE_MAX_MS: z.coerce.number().int().min(0).max(10_000).default(200),
  /** Entries of each endpoint's own conntrack table (an LRU: a pod evicts only its flows). */
  DYAD_CT_ENTRIES: z.coerce.number().int().min(64).max(4_194_304).default(8192),
  /** Ask ipam for another block set when fewer pod addresses than this are free on the node. */
  DYAD_IPAM_PRE_ALLOCATE: z.coerce.number().int().min(1).default(16),
  /** How long an ADD on a full node waits for ipam to grant another block set. */
  DYAD_IPAM_GROW_WAIT_MS: z.coerce.number().int().min(0).default(5000),
  /** How long a grow request waits for ipam's answer. */
  DYAD_IPAM_TIMEOUT_MS: z.coerce.number().int().min(100).default(5000),
  /** Also report every new flow policy allowed (datapath trace events), not only drops. */
  DYAD_FLOW_TRACE: Bool.default(false),
  DYAD_CNI_TRACE_LOOKUP_MS: z.coerce.number().int().min(0).max(5000).default(100),
  DYAD_HEALTH_PORT: z.coerce.number().int().min(0).max(65535).default(9876),
  DYAD_HEALTH_HOST: z.string().min(1).optional(),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
});

export interface AgentConfig {
  readonly nodeName: string;
  readonly nodeId: number;
  readonly nats: NatsSettings;
  readonly cniSocket: string;
  readonly apiSocket: string;
  readonly pinDir: string;
  /** The bpffs directory Dyad created for its pins (the default's `/sys/fs/bpf/dyad`). */
  readonly pinRoot: string;
  readonly stateFile: string;
  readonly uninstall: { readonly cniConfFile?: string; readonly paths: readonly string[] };
  readonly bpfObject?: string;
  readonly vethPrefix: string;
  readonly uplinks: readonly string[];
  readonly initIdentity: number;
  readonly enableForwarding: boolean;
  readonly coalesceMs: number;
  readonly coalesceMaxMs: number;
  readonly ctEntries: number;
  /** How long a CNI call waits for its pod's trace context on NATS (0: never looks). */
  readonly cniTraceLookupMs: number;
  readonly ipam: {
    readonly preAllocate: number;
    readonly growWaitMs: number;
    readonly timeoutMs: number;
  };
  /** host undefined: every address of both families. */
  readonly health: { readonly host: string | undefined; readonly port: number };
  readonly flowTrace: boolean;
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
}

const DEFAULT_PIN_ROOT = '/sys/fs/bpf/dyad';

function list(v: string): string[] {
  return v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

export function loadConfig(env: Readonly<Record<string, string | undefined>>): AgentConfig {
  const r = Env.safeParse(env);
  if (!r.success)
    throw new ConfigError(
      r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
    );
  const e = r.data;
  return {
    nodeName: e.DYAD_NODE_NAME,
    nodeId: e.DYAD_NODE_ID,
    nats: natsSettings(e),
    cniSocket: e.DYAD_CNI_SOCKET,
    apiSocket: e.DYAD_API_SOCKET,
    pinDir: e.DYAD_PIN_DIR ?? `${DEFAULT_PIN_ROOT}/${e.DYAD_NODE_NAME}`,
    pinRoot: e.DYAD_PIN_DIR ?? DEFAULT_PIN_ROOT,
    stateFile: join(e.DYAD_STATE_DIR, 'state.json'),
    ...(e.DYAD_BPF_OBJECT ? { bpfObject: e.DYAD_BPF_OBJECT } : {}),
    vethPrefix: e.DYAD_VETH_PREFIX,
    uninstall: {
      ...(e.DYAD_CNI_CONF_FILE ? { cniConfFile: e.DYAD_CNI_CONF_FILE } : {}),
      paths: list(e.DYAD_UNINSTALL_PATHS),
    },
    uplinks: list(e.DYAD_UPLINKS),
    initIdentity: e.DYAD_INIT_IDENTITY,
    enableForwarding: e.DYAD_ENABLE_FORWARDING,
    coalesceMs: e.DYAD_COALESCE_MS,
    coalesceMaxMs: e.DYAD_COALESCE_MAX_MS,
    ctEntries: e.DYAD_CT_ENTRIES,
    cniTraceLookupMs: e.DYAD_CNI_TRACE_LOOKUP_MS,
    ipam: {
      preAllocate: e.DYAD_IPAM_PRE_ALLOCATE,
      growWaitMs: e.DYAD_IPAM_GROW_WAIT_MS,
      timeoutMs: e.DYAD_IPAM_TIMEOUT_MS,
    },
    health: { host: e.DYAD_HEALTH_HOST, port: e.DYAD_HEALTH_PORT },
    flowTrace: e.DYAD_FLOW_TRACE,
    logLevel: e.LOG_LEVEL,
  };
}
