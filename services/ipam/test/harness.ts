// Real ipam processes against a real nats-server, for the integration tests and bench/ipam.ts.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectBus } from '@dyad/bus';
import type { Bus, KvBucket } from '@dyad/bus';
import type { IpamNodeRecordValue, NodeBlockValue, PayloadOf } from '@dyad/contracts';
import {
  GrowReply,
  GrowRequest,
  IPAM_KV_BUCKET,
  IPAM_NODES_STREAM,
  IpamAllocationsStream,
  IpamKey,
  IpamNodeEvent,
  IpamNodeRecord,
  K8sStream,
  NodeBlocksHeld,
  NodeEvent,
  ipamGrowSubject,
  ipamHeldSubject,
  k8sObjectSubject,
} from '@dyad/contracts';
import { createLogger, createMetrics } from '@dyad/telemetry';
import {
  childPassThroughEnv,
  freePort,
  httpGet,
  makeTempDir,
  probe200,
  spawnLogged,
  startNats,
  waitUntilReady,
} from '@dyad/testbed';
import type { ManagedProcess, NatsServer } from '@dyad/testbed';

export const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));

/** Dual-stack lab pools: 512 IPv4 /24 blocks, 65536 IPv6 /120 blocks. */
export const DUAL_STACK: Readonly<Record<string, string>> = {
  DYAD_ENABLE_IPV4: 'true',
  DYAD_ENABLE_IPV6: 'true',
  DYAD_CLUSTER_POOL_IPV4_CIDR: '198.18.0.0/15',
  DYAD_CLUSTER_POOL_IPV6_CIDR: 'fd00:d1ad::/104',
};

/** GC every half second with a 2 s node grace period, so tests see it act; no rebuild wait. */
export const FAST_GC: Readonly<Record<string, string>> = {
  DYAD_IPAM_GC_INTERVAL_S: '0.5',
  DYAD_IPAM_NODE_GRACE_S: '2',
  DYAD_IPAM_REBUILD_WAIT_S: '0',
};

export interface Replica {
  readonly name: string;
  readonly proc: ManagedProcess;
  readonly healthUrl: string;
  /** The replica's /metrics text. */
  metrics(): Promise<string>;
}

function childEnv(
  natsUrl: string,
  port: number,
  env: Readonly<Record<string, string>>,
): NodeJS.ProcessEnv {
  return {
    PATH: process.env['PATH'],
    HOME: process.env['HOME'],
    NATS_URL: natsUrl,
    DYAD_HEALTH_HOST: '127.0.0.1',
    DYAD_HEALTH_PORT: String(port),
    LOG_LEVEL: 'info',
    ...childPassThroughEnv(),
    ...env,
  };
}

let seq = 0;
const logDir = makeTempDir('dyad-ipam-', process.env['DYAD_KEEP_TESTBED'] === '1');

/** Spawns `node services/ipam/src/main.ts` and waits for /readyz. */
export async function startReplica(
  natsUrl: string,
  env: Readonly<Record<string, string>>,
  name = `ipam-${++seq}`,
): Promise<Replica> {
  const port = await freePort();
  const proc = spawnLogged({
    name,
    command: process.execPath,
    args: [MAIN],
    logPath: join(logDir, `${name}-${Date.now()}.log`),
    env: childEnv(natsUrl, port, env),
  });
  const healthUrl = `http://127.0.0.1:${port}`;
  await waitUntilReady(proc, () => probe200(`${healthUrl}/readyz`), {
    timeoutMs: 60_000,
    what: 'ready',
  });
  return {
    name,
    proc,
    healthUrl,
    metrics: async () => (await httpGet(`${healthUrl}/metrics`)).body,
  };
}

/** Runs a replica that is expected to refuse to start; resolves with its exit code and log. */
export async function runUntilExit(
  natsUrl: string,
  env: Readonly<Record<string, string>>,
): Promise<{ code: number | null; log: string }> {
  const port = await freePort();
  const proc = spawnLogged({
    name: `ipam-refused-${++seq}`,
    command: process.execPath,
    args: [MAIN],
    logPath: join(logDir, `refused-${seq}.log`),
    env: childEnv(natsUrl, port, env),
  });
  const timer = setTimeout(() => proc.signal('SIGKILL'), 60_000);
  const info = await proc.exited;
  clearTimeout(timer);
  return { code: info.code, log: proc.logTail(50) };
}

/** Sum of a counter's samples matching the labels, from Prometheus text. */
export function metricValue(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const ls = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => ls.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

/** A nats-server of its own, a client, announced nodes and ipam replicas; `stop` ends them all. */
export interface Cluster {
  readonly nats: NatsServer;
  readonly bus: Bus;
  readonly replicas: Replica[];
  stop(): Promise<void>;
}

/** Starts a nats-server, announces `nodes`, then starts one replica per name in `replicas`. */
export async function startCluster(
  nodes: readonly string[],
  env: Readonly<Record<string, string>> = {},
  replicas: readonly string[] = [],
): Promise<Cluster> {
  const nats = await startNats();
  const bus = await clientBus(nats.url);
  for (const n of nodes) await publishNode(bus, n);
  const started: Replica[] = [];
  const cluster: Cluster = {
    nats,
    bus,
    replicas: started,
    stop: async () => {
      await Promise.all(started.map((r) => r.proc.stop()));
      await bus.close();
      await nats.stop();
    },
  };
  for (const name of replicas) started.push(await startReplica(nats.url, env, name));
  return cluster;
}

export async function clientBus(natsUrl: string, name = 'ipam-test'): Promise<Bus> {
  return connectBus({
    servers: natsUrl,
    name,
    logger: createLogger({ service: name, level: 'silent' }),
    registry: createMetrics({ processMetrics: false }),
    reconnect: { timeWaitMs: 200, jitterMs: 100 },
  });
}

/** Publishes a Node as kube-bridge would. */
export async function publishNode(
  bus: Bus,
  name: string,
  op: 'upsert' | 'delete' = 'upsert',
): Promise<void> {
  await bus.ensureStreams([K8sStream]);
  await announceNode(bus, name, op);
}

/** The same, on a stream known to exist (for many nodes at once). */
export async function announceNode(
  bus: Bus,
  name: string,
  op: 'upsert' | 'delete' = 'upsert',
): Promise<void> {
  await bus.jsPublish(NodeEvent, k8sObjectSubject('Node', undefined, name), {
    op,
    object: {
      metadata: { uid: `uid-${name}`, name, resourceVersion: '1', labels: {} },
      spec: { podCIDRs: [], unschedulable: false },
      status: { addresses: [], ready: true },
    },
  });
}

export type Blocks = PayloadOf<typeof GrowReply>['blocks'];

/** A grow request as a node agent sends it. */
export function grow(bus: Bus, node: string, sets: number, timeoutMs = 10_000): Promise<Blocks> {
  return bus
    .request(GrowRequest, ipamGrowSubject(node), { node, sets }, GrowReply, { timeoutMs })
    .then((r) => r.blocks);
}

/** A node agent's report of the blocks it holds. */
export async function publishHeld(
  bus: Bus,
  node: string,
  blocks: readonly NodeBlockValue[],
): Promise<void> {
  await bus.ensureStreams([IpamAllocationsStream]);
  await bus.jsPublish(NodeBlocksHeld, ipamHeldSubject(node), {
    node,
    blocks: [...blocks],
    at: new Date().toISOString(),
  });
}

/** The last assignment event of every node (upserts and tombstones) in DYAD_IPAM_NODES. */
export async function assignments(bus: Bus): Promise<Map<string, PayloadOf<typeof IpamNodeEvent>>> {
  const snap = await bus.snapshot([IpamNodeEvent], { stream: IPAM_NODES_STREAM });
  return new Map([...snap.values()].map((d) => [d.value.node, d.value]));
}

export async function ipamKv(bus: Bus): Promise<KvBucket> {
  return bus.kv(IPAM_KV_BUCKET);
}

/** Every node record in the bucket, decoded. */
export async function readRecords(kv: KvBucket): Promise<Map<string, IpamNodeRecordValue>> {
  const out = new Map<string, IpamNodeRecordValue>();
  for (const { value } of await kv.values(IpamKey.nodeFilter)) {
    const r = IpamNodeRecord.parse(value);
    out.set(r.name, r);
  }
  return out;
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function pool<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i] as T, i);
      }
    }),
  );
  return out;
}
