// The lab supervisor: started detached by `lab up` as `daemon.ts '{"options":...,"seed":"hex"}'`.
// Builds the namespaces, runs the control plane and every Dyad process, keeps state.json
// current, restarts what dies, and tears everything down on SIGTERM.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import type { Server } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { ROUTER_STREAM, RouterSyncEvent, routerSyncSubject } from '@dyad/contracts';
import { connectBus } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { startKube, startNats } from '@dyad/testbed';
import type { KubeCluster, NatsServer } from '@dyad/testbed';
import { cleanupRun } from './cleanup.ts';
import { KubeClient } from './kube-client.ts';
import { buildFabric } from './network.ts';
import { ENV_DIR, ENV_RUN, OWNER_DIR, labPaths } from './paths.ts';
import { makePlan } from './plan.ts';
import type { LabPlan } from './plan.ts';
import { helmInstall, natsNodeCount, NAMESPACE } from './helm-install.ts';
import { imageArchives, kubeletNodeFiles, startKubeletNode } from './kubelet-mode.ts';
import { tcpToUnixRelay, unixToTcpRelay } from './relay.ts';
import type { LabStateValue, NodeRecordValue } from './state.ts';
import { writeState } from './state.ts';
import { Supervisor } from './supervisor.ts';
import { startTime } from './sys.ts';

const Args = z.object({
  options: z.object({
    nodes: z.number(),
    ipv4: z.boolean(),
    ipv6: z.boolean(),
    kubelet: z.boolean().optional(),
  }),
  seed: z.string().regex(/^[0-9a-f]{12}$/),
});

const say = (msg: string): void => {
  process.stdout.write(`${new Date().toISOString()} ${msg}\n`);
};

const paths = labPaths();
const args = Args.parse(JSON.parse(process.argv[2] ?? '{}'));
const plan: LabPlan = makePlan(args.options, Buffer.from(args.seed, 'hex'));
const node = process.execPath;
const repo = (...p: string[]): string => join(paths.root, ...p);

for (const d of [
  paths.logs,
  paths.run,
  join(paths.run, 'pods'),
  paths.pods,
  paths.cni,
  paths.tmp,
  paths.agents,
  OWNER_DIR,
]) {
  mkdirSync(d, { recursive: true });
}
// Everything this process starts, the control plane included, carries the marks, so a later
// cleanup finds it even if this process is killed; temp dirs go under .lab/tmp.
process.env[ENV_RUN] = plan.prefix;
process.env[ENV_DIR] = paths.dir;
process.env.TMPDIR = paths.tmp;
writeFileSync(join(OWNER_DIR, `${plan.prefix}.owner`), paths.dir + '\n');

const kubeletMode = plan.options.kubelet === true;
// In kubelet mode the chart's agent serves its sockets in the node's /run/dyad and the chart's
// install-cni writes the conflist into the node's /etc/cni/net.d (node-mounts.ts).
const nodes: NodeRecordValue[] = plan.nodes.map((n) => {
  const k = kubeletNodeFiles(paths, n.name, n.pinDir);
  return {
    name: n.name,
    netns: n.netns,
    uplink: n.uplink,
    addresses: n.addresses,
    pinDir: n.pinDir,
    cniSocket: kubeletMode ? join(k.runDyad, 'cni.sock') : join(paths.run, n.name, 'cni.sock'),
    apiSocket: kubeletMode ? join(k.runDyad, 'agent.sock') : join(paths.run, n.name, 'agent.sock'),
    conflist: kubeletMode
      ? join(k.cniConfDir, '05-dyad.conflist')
      : join(paths.cni, n.name, '10-dyad.conflist'),
  };
});

const state: LabStateValue = {
  version: 1,
  prefix: plan.prefix,
  phase: 'starting',
  step: 'network namespaces',
  warnings: [],
  startedAt: new Date().toISOString(),
  options: plan.options,
  families: [...plan.families],
  supervisorPid: process.pid,
  ...(startTime(process.pid) === undefined ? {} : { supervisorStartTime: startTime(process.pid) }),
  fabricNetns: plan.fabricNetns,
  fabric: plan.fabric,
  podPools: {
    ...(plan.podPools.IPv4 ? { IPv4: plan.podPools.IPv4.cidr } : {}),
    ...(plan.podPools.IPv6 ? { IPv6: plan.podPools.IPv6.cidr } : {}),
  },
  serviceRange: plan.serviceRange,
  pinRoot: plan.pinRoot,
  kubeconfig: paths.kubeconfig,
  nodes,
  processes: [],
};

const supervisor = new Supervisor({ logs: paths.logs, env: {}, onChange: () => save() });
function save(): void {
  state.processes = supervisor.records();
  writeState(paths.state, state);
}
function step(s: string): void {
  state.step = s;
  say(s);
  save();
}

let nats: NatsServer | undefined;
let kube: KubeCluster | undefined;
let relay: Server | undefined;
let apiRelay: Server | undefined;
let natsRelay: Server | undefined;
let bus: Bus | undefined;
let stopping = false;

async function teardown(): Promise<void> {
  await supervisor.stop();
  relay?.close();
  apiRelay?.close();
  natsRelay?.close();
  await bus?.close().catch(() => undefined);
  await Promise.allSettled([kube?.stop(), nats?.stop()]);
  await cleanupRun(plan.prefix);
}

async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  say(`${signal}: stopping the lab`);
  state.phase = 'stopping';
  save();
  await teardown();
  say('stopped');
  process.exit(0);
}
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const)
  process.on(sig, () => void shutdown(sig));

function serviceEnv(natsUrl: string): NodeJS.ProcessEnv {
  return {
    NATS_URL: natsUrl,
    DYAD_HEALTH_PORT: '0',
    DYAD_HEALTH_HOST: '127.0.0.1',
    LOG_LEVEL: process.env.DYAD_LAB_LOG_LEVEL ?? 'info',
  };
}

function ipamEnv(): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = {
    DYAD_ENABLE_IPV4: String(plan.options.ipv4),
    DYAD_ENABLE_IPV6: String(plan.options.ipv6),
    DYAD_IPAM_PRIMARY_FAMILY: plan.families[0] ?? 'IPv4',
  };
  if (plan.podPools.IPv4) {
    e.DYAD_CLUSTER_POOL_IPV4_CIDR = plan.podPools.IPv4.cidr;
    e.DYAD_CLUSTER_POOL_IPV4_MASK_SIZE = String(plan.podPools.IPv4.maskSize);
  }
  if (plan.podPools.IPv6) {
    e.DYAD_CLUSTER_POOL_IPV6_CIDR = plan.podPools.IPv6.cidr;
    e.DYAD_CLUSTER_POOL_IPV6_MASK_SIZE = String(plan.podPools.IPv6.maskSize);
  }
  return e;
}

const AGENT_MAIN = repo('services', 'datapath-agent', 'src', 'main.ts');

function startNode(n: NodeRecordValue, index: number, natsSock: string): void {
  mkdirSync(join(paths.run, n.name), { recursive: true });
  mkdirSync(join(paths.cni, n.name), { recursive: true });
  mkdirSync(join(paths.agents, n.name), { recursive: true });
  writeFileSync(
    n.conflist,
    JSON.stringify(
      {
        cniVersion: '1.1.0',
        name: 'dyad',
        plugins: [{ type: 'dyad-cni', agentSocket: n.cniSocket }],
      },
      null,
      2,
    ) + '\n',
  );
  supervisor.start({
    name: `nats-relay-${n.name}`,
    netns: n.netns,
    command: node,
    args: [repo('lab', 'src', 'forward.ts'), '127.0.0.1:4222', natsSock],
    restart: true,
  });
  if (existsSync(AGENT_MAIN)) {
    supervisor.start({
      name: `agent-${n.name}`,
      netns: n.netns,
      command: node,
      args: [AGENT_MAIN],
      env: {
        ...serviceEnv('nats://127.0.0.1:4222'),
        DYAD_NODE_NAME: n.name,
        DYAD_NODE_ID: String(index + 1),
        DYAD_CNI_SOCKET: n.cniSocket,
        DYAD_API_SOCKET: n.apiSocket,
        DYAD_PIN_DIR: n.pinDir,
        DYAD_STATE_DIR: join(paths.agents, n.name),
        DYAD_VETH_PREFIX: plan.prefix,
        DYAD_UPLINKS: n.uplink,
      },
      restart: true,
    });
  }
  supervisor.start({
    name: `pods-${n.name}`,
    command: node,
    args: [repo('lab', 'src', 'pod-runtime.ts'), n.name],
    env: { LOG_LEVEL: process.env.DYAD_LAB_LOG_LEVEL ?? 'info' },
    restart: true,
  });
}

/** Asks an agent's CNI socket for VERSION, as dyad-cni would: true when it answers with code 0. */
function cniAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ path, allowHalfOpen: true });
    let reply = '';
    const timer = setTimeout(() => s.destroy(), 2000);
    s.once('connect', () => {
      s.end(
        JSON.stringify({
          v: 1,
          env: { CNI_COMMAND: 'VERSION', CNI_PATH: '', CNI_CONTAINERID: '', CNI_IFNAME: '' },
          stdin: JSON.stringify({ cniVersion: '1.1.0' }),
        }),
      );
    });
    s.on('data', (d: Buffer) => (reply += d.toString()));
    s.once('error', () => resolve(false));
    s.once('close', () => {
      clearTimeout(timer);
      resolve(reply.startsWith('0\n'));
    });
  });
}

/** Ready: every Node registered and Ready, the router's state for every node published, agents listening. */
async function waitReady(kc: KubeClient, b: Bus, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  const expectedRoutes = (plan.nodes.length - 1) * plan.families.length;
  let problem = 'not checked yet';
  while (Date.now() < until) {
    problem = await (async () => {
      const list = await kc.call<{
        items: Array<{
          metadata: { name: string };
          status?: { conditions?: Array<{ type: string; status: string }> };
        }>;
      }>('GET', '/api/v1/nodes');
      for (const n of plan.nodes) {
        const k = list.items.find((i) => i.metadata.name === n.name);
        if (k === undefined) return `Node ${n.name} not registered`;
        if (!k.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
          return `Node ${n.name} not Ready`;
      }
      const syncs = await b.snapshot([RouterSyncEvent], {
        stream: ROUTER_STREAM,
        filterSubjects: plan.nodes.map((n) => routerSyncSubject(n.name)),
      });
      for (const n of plan.nodes) {
        const sync = syncs.get(routerSyncSubject(n.name))?.value;
        if (sync === undefined || sync.op !== 'upsert')
          return `router has no state for ${n.name} yet`;
        if (sync.routes < expectedRoutes)
          return `router state of ${n.name} has ${sync.routes}/${expectedRoutes} routes (waiting for IPAM blocks and node addresses)`;
      }
      if (existsSync(AGENT_MAIN)) {
        for (const n of nodes)
          if (!(await cniAnswers(n.cniSocket)))
            return `agent of ${n.name} not listening on ${n.cniSocket}`;
      }
      return '';
    })().catch((err: unknown) => String(err));
    if (problem === '') return;
    state.step = `waiting: ${problem}`;
    save();
    await sleep(250);
  }
  throw new Error(`lab not ready after ${timeoutMs / 1000} s: ${problem}`);
}

/** Stand-in mode: the Dyad services and agents as supervised processes on the testbed's NATS. */
async function startProcessLab(n: NatsServer | undefined): Promise<string> {
  if (n === undefined) throw new Error('no nats-server');
  const natsSock = join(paths.run, 'nats.sock');
  relay = await unixToTcpRelay(natsSock, '127.0.0.1', n.port);
  step('Dyad services');
  supervisor.start({
    name: 'kube-bridge',
    command: node,
    args: [repo('services', 'kube-bridge', 'src', 'main.ts')],
    env: { ...serviceEnv(n.url), KUBECONFIG: paths.kubeconfig, DYAD_KUBE_BRIDGE_EVENTS: 'true' },
    restart: true,
  });
  for (const i of [1, 2]) {
    supervisor.start({
      name: `ipam-${i}`,
      command: node,
      args: [repo('services', 'ipam', 'src', 'main.ts')],
      env: { ...serviceEnv(n.url), ...ipamEnv() },
      restart: true,
    });
  }
  supervisor.start({
    name: 'router',
    command: node,
    args: [repo('services', 'router', 'src', 'main.ts')],
    env: serviceEnv(n.url),
    restart: true,
  });
  supervisor.start({
    name: 'policy',
    command: node,
    args: [repo('services', 'policy', 'src', 'main.ts')],
    env: serviceEnv(n.url),
    restart: true,
  });
  if (!existsSync(AGENT_MAIN)) {
    state.warnings.push(`no datapath agent (${AGENT_MAIN} missing): pods will not get networking`);
  }
  step('nodes: agents and pod runtimes');
  plan.nodes.forEach((_, i) => {
    const nd = nodes[i];
    if (nd !== undefined) startNode(nd, i, natsSock);
  });
  return n.url;
}

/** Until the DaemonSet dyad-agent has a ready agent on every node. */
async function waitAgentsReady(kc: KubeClient, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  let seen = 'no DaemonSet yet';
  while (Date.now() < until) {
    const ds = await kc
      .call<{ status?: { numberReady?: number; desiredNumberScheduled?: number } }>(
        'GET',
        `/apis/apps/v1/namespaces/${NAMESPACE}/daemonsets/dyad-agent`,
      )
      .catch(() => undefined);
    const ready = ds?.status?.numberReady ?? 0;
    seen = `${ready}/${plan.nodes.length} agents ready`;
    if (ready === plan.nodes.length) return;
    state.step = `waiting: ${seen}`;
    save();
    await sleep(250);
  }
  throw new Error(`dyad-agent not ready after ${timeoutMs / 1000} s: ${seen}`);
}

/**
 * Kubelet mode: a kubelet and containerd per node, then Dyad from the chart with helm. Returns
 * the URL the machine's side reaches the chart's NATS at (a relay into the first node's netns).
 */
async function startKubeletLab(k: KubeCluster): Promise<string> {
  step('nodes: containerd and kubelets');
  const apiserverSocket = join(paths.run, 'apiserver.sock');
  const api = new URL(k.server);
  apiRelay = await unixToTcpRelay(apiserverSocket, api.hostname, Number(api.port));
  const archives = [...(await imageArchives(paths.root)).values()];
  await Promise.all(
    nodes.map((n, i) =>
      startKubeletNode({
        supervisor,
        paths,
        prefix: plan.prefix,
        node: n,
        families: plan.families,
        apiserverSocket,
        archives,
        natsNode: i < natsNodeCount(plan),
      }),
    ),
  );
  step('helm install dyad');
  const t0 = Date.now();
  await helmInstall({ paths, plan });
  await waitAgentsReady(new KubeClient(k.server, k.tls), 300_000);
  state.installSeconds = (Date.now() - t0) / 1000;
  const first = nodes[0];
  const primary = plan.families[0];
  const addr = first && primary ? first.addresses[primary]?.split('/')[0] : undefined;
  if (first === undefined || addr === undefined) throw new Error('no first node address');
  const natsSock = join(paths.run, 'nats.sock');
  supervisor.start({
    name: `nats-dial-${first.name}`,
    netns: first.netns,
    command: node,
    args: [
      repo('lab', 'src', 'dial.ts'),
      natsSock,
      `${addr.includes(':') ? `[${addr}]` : addr}:4222`,
    ],
    restart: true,
  });
  for (let i = 0; !existsSync(natsSock); i++) {
    if (i > 300) throw new Error(`no NATS relay at ${natsSock}`);
    await sleep(100);
  }
  natsRelay = await tcpToUnixRelay('127.0.0.1', 0, natsSock);
  const port = (natsRelay.address() as { port: number }).port;
  return `nats://127.0.0.1:${port}`;
}

try {
  step('network namespaces and the node fabric');
  buildFabric(plan);
  step('nats-server and the Kubernetes control plane');
  if (kubeletMode) {
    kube = await startKube({ scheduler: true, serviceClusterIpRange: plan.serviceRange });
  } else {
    [nats, kube] = await Promise.all([
      startNats(),
      startKube({ scheduler: true, serviceClusterIpRange: plan.serviceRange }),
    ]);
  }
  writeFileSync(paths.kubeconfig, readFileSync(kube.kubeconfigPath));
  state.apiserver = kube.server;
  state.tls = kube.tls;
  const kc = new KubeClient(kube.server, kube.tls);
  let natsUrl: string;
  if (kubeletMode) natsUrl = await startKubeletLab(kube);
  else natsUrl = await startProcessLab(nats);
  state.natsUrl = natsUrl;
  bus = await connectBus({
    servers: natsUrl,
    name: 'lab',
    logger: createLogger({ service: 'lab', level: 'warn' }),
    registry: createMetrics(),
  });
  await waitReady(kc, bus, 240_000);
  state.phase = 'ready';
  state.readyAt = new Date().toISOString();
  step('ready');
} catch (err) {
  state.phase = 'failed';
  state.error = err instanceof Error ? err.message : String(err);
  say(`failed: ${state.error}`);
  save();
  // for a look at what failed (kubelet mode: pods' logs under .lab/kubelet/<node>/host/pod-logs);
  // `lab down` removes it
  if (process.env.DYAD_LAB_KEEP_FAILED === '1') await new Promise(() => undefined);
  stopping = true;
  await teardown();
  process.exit(1);
}
