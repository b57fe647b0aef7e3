// The lab supervisor: started detached by `lab up` as `daemon.ts '{"options":...,"seed":"hex"}'`.
// Builds the namespaces, runs the control plane and every Dyad process, keeps state.json
// current, restarts what dies, and tears everything down on SIGTERM.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import type { Server } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import {
  ROUTER_STREAM,
  RouterSyncEvent,
  ServiceIdentity,
  agentIdentity,
  clusterIdentities,
  inboxPermission,
  routerSyncSubject,
} from '@dyad/contracts';
import { connectBus } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { createNatsSecurity, natsSecurityConfig, probe200, startKube } from '@dyad/testbed';
import type { KubeCluster, NatsSecurity } from '@dyad/testbed';
import { cleanupRun } from './cleanup.ts';
import { freePort, jaegerConfig } from './jaeger.ts';
import { writeDyadConfig } from './dyad-config.ts';
import { KubeClient } from './kube-client.ts';
import { planNatsCluster, startNatsCluster, waitNatsHealthy } from './nats-cluster.ts';
import type { NatsMember } from './nats-cluster.ts';
import { buildFabric } from './network.ts';
import { ENV_DIR, ENV_RUN, OWNER_DIR, labPaths } from './paths.ts';
import { makePlan } from './plan.ts';
import type { LabPlan } from './plan.ts';
import { helmInstall, labNatsAccess, natsNodeCount, NAMESPACE } from './helm-install.ts';
import type { LabNatsAccess } from './helm-install.ts';
import { imageArchives, kubeletNodeFiles, startKubeletNode } from './kubelet-mode.ts';
import { tcpToUnixRelay, unixToTcpRelay } from './relay.ts';
import type { LabStateValue, NodeRecordValue } from './state.ts';
import { writeState } from './state.ts';
import { chartServiceCommand } from './service-command.ts';
import { Supervisor } from './supervisor.ts';
import { startTime } from './sys.ts';

const Args = z.object({
  options: z.object({
    nodes: z.number(),
    ipv4: z.boolean(),
    ipv6: z.boolean(),
    kubelet: z.boolean().optional(),
    tracing: z.boolean().optional(),
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

let kube: KubeCluster | undefined;
let natsRelays: Server[] = [];
let apiRelay: Server | undefined;
let otlpRelay: Server | undefined;
let natsRelay: Server | undefined;
let bus: Bus | undefined;
let stopping = false as boolean;
const isStopping = (): boolean => stopping;

async function teardown(): Promise<void> {
  await supervisor.stop();
  for (const r of natsRelays) r.close();
  apiRelay?.close();
  otlpRelay?.close();
  natsRelay?.close();
  await bus?.close().catch(() => undefined);
  await Promise.allSettled([kube?.stop()]);
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

/** Where OTLP goes from the machine's netns (Jaeger's port) and from node netns (the relay). */
const OTLP_IN_NODE = 'http://127.0.0.1:4318';
let otlpUrl: string | undefined;

/** dyad-config as the chart mounts it: every service and agent reads it (pools, stream replicas). */
const configDir = join(paths.tmp, 'dyad-config');

let security: NatsSecurity | undefined;
/** Kubelet mode: the lab's operator token for the chart's NATS (through its auth callout). */
let kubeletNats: LabNatsAccess | undefined;

/** Where `identity`'s credentials are: `.lab/creds/<identity>.creds`. */
function credsOf(identity: string): string {
  const path = security?.creds.get(identity);
  if (path === undefined) throw new Error(`no NATS identity ${identity}`);
  return path;
}

function serviceEnv(
  natsUrl: string,
  identity: string,
  otlp: string | undefined = otlpUrl,
): NodeJS.ProcessEnv {
  return {
    NATS_URL: natsUrl,
    NATS_CREDS: credsOf(identity),
    NATS_CA: security?.tls.caFile,
    DYAD_CONFIG_DIR: configDir,
    DYAD_HEALTH_PORT: '0',
    DYAD_HEALTH_HOST: '127.0.0.1',
    LOG_LEVEL: process.env.DYAD_LAB_LOG_LEVEL ?? 'info',
    // The standard variables only: the services' tracing reads nothing else. A short batch
    // delay so a trace is complete in Jaeger soon after the work, for the lab's tests and users.
    ...(otlp === undefined
      ? {}
      : { OTEL_EXPORTER_OTLP_ENDPOINT: otlp, OTEL_BSP_SCHEDULE_DELAY: '200' }),
  };
}

/** Starts Jaeger (tools/bin/jaeger) on free loopback ports; resolves once its query API answers. */
async function startJaeger(): Promise<{ queryUrl: string; otlpUrl: string; otlpPort: number }> {
  const bin = repo('tools', 'bin', 'jaeger');
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run bash tools/build.sh jaeger`);
  const ports = {
    otlpHttp: await freePort(),
    queryHttp: await freePort(),
    queryGrpc: await freePort(),
  };
  const config = join(paths.dir, 'jaeger.yaml');
  writeFileSync(config, jaegerConfig(ports));
  supervisor.start({ name: 'jaeger', command: bin, args: ['--config', config], restart: true });
  const queryUrl = `http://127.0.0.1:${ports.queryHttp}`;
  const until = Date.now() + 60_000;
  for (;;) {
    const ok = await fetch(`${queryUrl}/api/services`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > until) throw new Error(`Jaeger's query API at ${queryUrl} did not answer`);
    await sleep(200);
  }
  return { queryUrl, otlpUrl: `http://127.0.0.1:${ports.otlpHttp}`, otlpPort: ports.otlpHttp };
}

/**
 * Restarts kube-apiserver whenever it exits (as a kubelet restarts a static pod), so a fault
 * that kills it is bounded; its pid is in state.json for whoever kills it.
 */
async function keepApiserver(k: KubeCluster): Promise<void> {
  for (;;) {
    const { pid, exited } = k.apiserver();
    state.apiserverPid = pid;
    save();
    const exit = await exited;
    if (stopping) return;
    say(`kube-apiserver exited (${exit.signal ?? `code ${exit.code}`}): restarting it`);
    for (;;) {
      try {
        await k.restartApiserver({ graceMs: 0 });
        break;
      } catch (err) {
        // read through a call: shutdown() sets it while this loop awaits
        if (isStopping()) return;
        say(`kube-apiserver did not start again: ${String(err)}`);
        await sleep(1000);
      }
    }
  }
}

/** Every server's URL: each process gets all of them and moves on when one is away. */
function natsUrls(members: readonly NatsMember[]): string {
  return members.map((m) => m.url).join(',');
}

/** The machine-side end of a node's relay to one server. */
function natsSocket(m: NatsMember): string {
  return join(paths.run, `${m.name}.sock`);
}

const service = (name: string) => chartServiceCommand(paths.root, name);
const AGENT = service('datapath-agent');
const AGENT_MAIN = AGENT.args.at(-1) ?? '';

function startNode(
  n: NodeRecordValue,
  index: number,
  members: readonly NatsMember[],
  otlpSock: string | undefined,
): void {
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
    args: [
      repo('lab', 'src', 'forward.ts'),
      ...members.flatMap((m) => [`127.0.0.1:${m.port}`, natsSocket(m)]),
    ],
    restart: true,
  });
  if (otlpSock !== undefined) {
    supervisor.start({
      name: `otlp-relay-${n.name}`,
      netns: n.netns,
      command: node,
      args: [repo('lab', 'src', 'forward.ts'), '127.0.0.1:4318', otlpSock],
      restart: true,
    });
  }
  if (existsSync(AGENT_MAIN)) {
    supervisor.start({
      name: `agent-${n.name}`,
      netns: n.netns,
      command: node,
      args: AGENT.args,
      env: {
        ...AGENT.env,
        ...serviceEnv(
          natsUrls(members),
          agentIdentity(n.name),
          otlpSock === undefined ? undefined : OTLP_IN_NODE,
        ),
        // traced: a CNI call may wait longer for its pod's trace context (a NATS read), so one
        // pod stays one trace on a busy machine too
        ...(otlpSock === undefined ? {} : { DYAD_CNI_TRACE_LOOKUP_MS: '2000' }),
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

/**
 * Stand-in mode: the Dyad services and agents as supervised processes on the lab's NATS cluster,
 * every one with its own identity. Returns every server's URL.
 */
async function startProcessLab(members: readonly NatsMember[]): Promise<string> {
  if (security === undefined) throw new Error('no NATS identities');
  const natsUrl = natsUrls(members);
  natsRelays = await Promise.all(
    members.map((m) => unixToTcpRelay(natsSocket(m), '127.0.0.1', m.port)),
  );
  let otlpSock: string | undefined;
  if (plan.options.tracing === true) {
    step('Jaeger');
    const jaeger = await startJaeger();
    otlpUrl = jaeger.otlpUrl;
    otlpSock = join(paths.run, 'otlp.sock');
    otlpRelay = await unixToTcpRelay(otlpSock, '127.0.0.1', jaeger.otlpPort);
    state.jaeger = { queryUrl: jaeger.queryUrl, otlpUrl: jaeger.otlpUrl };
  }
  step('streams and buckets (the bootstrap service)');
  // The one holder of the bootstrap identity, for the lab's whole life: it creates every stream
  // and bucket now and again whenever NATS loses them. The services start once it is ready.
  const bootstrapHealth = await freePort();
  supervisor.start({
    name: 'bootstrap',
    command: node,
    args: service('bootstrap').args,
    env: {
      ...service('bootstrap').env,
      ...serviceEnv(natsUrl, ServiceIdentity.bootstrap),
      DYAD_HEALTH_PORT: String(bootstrapHealth),
    },
    restart: true,
  });
  const bootstrapReady = `http://127.0.0.1:${bootstrapHealth}/readyz`;
  for (const until = Date.now() + 120_000; ;) {
    if ((await probe200(bootstrapReady).catch(() => false)) === true) break;
    if (Date.now() > until) throw new Error(`the bootstrap service not ready: ${bootstrapReady}`);
    await sleep(200);
  }
  step('Dyad services');
  supervisor.start({
    name: 'kube-bridge',
    command: node,
    args: service('kube-bridge').args,
    env: {
      ...service('kube-bridge').env,
      ...serviceEnv(natsUrl, ServiceIdentity.kubeBridge),
      KUBECONFIG: paths.kubeconfig,
      DYAD_KUBE_BRIDGE_EVENTS: 'true',
    },
    restart: true,
  });
  for (const i of [1, 2]) {
    supervisor.start({
      name: `ipam-${i}`,
      command: node,
      args: service('ipam').args,
      env: { ...service('ipam').env, ...serviceEnv(natsUrl, ServiceIdentity.ipam) },
      restart: true,
    });
  }
  supervisor.start({
    name: 'router',
    command: node,
    args: service('router').args,
    env: { ...service('router').env, ...serviceEnv(natsUrl, ServiceIdentity.router) },
    restart: true,
  });
  supervisor.start({
    name: 'policy',
    command: node,
    args: service('policy').args,
    env: { ...service('policy').env, ...serviceEnv(natsUrl, ServiceIdentity.policy) },
    restart: true,
  });
  if (!existsSync(AGENT_MAIN)) {
    state.warnings.push(`no datapath agent (${AGENT_MAIN} missing): pods will not get networking`);
  }
  step('nodes: agents and pod runtimes');
  plan.nodes.forEach((_, i) => {
    const nd = nodes[i];
    if (nd !== undefined) startNode(nd, i, members, otlpSock);
  });
  return natsUrl;
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
  kubeletNats = await labNatsAccess(paths);
  state.natsCa = kubeletNats.caFile;
  state.natsToken = kubeletNats.tokenFile;
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
  let members: NatsMember[] = [];
  if (kubeletMode) {
    // NATS comes from the chart (helm install, below)
    step('the Kubernetes control plane');
    kube = await startKube({ scheduler: true, serviceClusterIpRange: plan.serviceRange });
  } else {
    step('NATS cluster and the Kubernetes control plane');
    writeDyadConfig(configDir, plan);
    // Every service and node agent its own NATS identity over TLS, as the chart runs them:
    // .lab/creds/<identity>.creds, the CA in .lab/tls/ca.crt.
    security = await createNatsSecurity(paths.dir, {
      identities: clusterIdentities(plan.nodes.map((n) => n.name)),
      inbox: inboxPermission,
    });
    members = await planNatsCluster(
      join(paths.tmp, 'nats'),
      natsSecurityConfig(security.identities, security.tls),
    );
    startNatsCluster(supervisor, join(paths.tmp, 'nats'), members);
    [, kube] = await Promise.all([
      waitNatsHealthy(members, 120_000),
      startKube({
        scheduler: true,
        serviceClusterIpRange: plan.serviceRange,
        // a SIGTERM ends every watch within 2 s, cleanly: the chaos suite's watch-expiry fault
        // relies on it (a watch that ends, resumed from an expired resourceVersion, is a 410)
        extraArgs: { 'kube-apiserver': ['--shutdown-watch-termination-grace-period=2s'] },
      }),
    ]);
    state.natsCa = security.tls.caFile;
    state.natsCreds = join(paths.dir, 'creds');
    state.nats = members.map((m) => ({
      name: m.name,
      url: m.url,
      monitorUrl: m.monitorUrl,
      storeDir: m.storeDir,
    }));
  }
  writeFileSync(paths.kubeconfig, readFileSync(kube.kubeconfigPath));
  state.apiserver = kube.server;
  state.etcdUrl = kube.etcdUrl;
  void keepApiserver(kube);
  state.tls = kube.tls;
  const kc = new KubeClient(kube.server, kube.tls);
  const natsUrl = kubeletMode ? await startKubeletLab(kube) : await startProcessLab(members);
  state.natsUrl = natsUrl;
  bus = await connectBus({
    servers: natsUrl.split(','),
    name: 'lab',
    ...(security === undefined
      ? {}
      : { credsFile: credsOf(ServiceIdentity.operator), caFile: security.tls.caFile }),
    ...(kubeletNats === undefined
      ? {}
      : {
          tokenFile: kubeletNats.tokenFile,
          identity: ServiceIdentity.operator,
          caFile: kubeletNats.caFile,
        }),
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
