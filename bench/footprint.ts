// `npm run bench -- footprint [--pods 50000] [--node-pods 110]` (root): what the agent and the
// services hold in memory, all measured in one run (issue #20).
//  - bare_rss_mib: `node` running an empty loop;
//  - deps_floor_rss_mib: a process that only imports the agent's third-party runtime dependencies
//    (bench/support/deps-floor.mjs, a fixed list);
//  - agent_idle_rss_mib, ipam_rss_mib, router_rss_mib, kube_bridge_rss_mib: the processes of a
//    fresh idle 3-node dual-stack lab (.lab/bench-footprint), as the lab runs them;
//  - agent_50k_rss_mib: node-1's agent once the lab's NATS carries --pods remote pods for it (one
//    router ipcache entry per pod and family, hosted on --pods / --node-pods other nodes, plus
//    those nodes' routes), published here as the router would, and all of them are in its
//    pinned ipcache;
//  - agent_ready_ms: node-1's agent killed (-9) with that state, from its successor's start (the
//    kernel's start time) until its CNI socket answers VERSION (maps loaded, restored, serving);
//  - agent_restart_50k_rss_mib: that successor once it has read the --pods back from NATS (its
//    start-up snapshot) and settled: what a restart on a big cluster costs.
// RSS is VmRSS, the median of 5 samples 400 ms apart, 15 s after the process's work ended (V8's
// memory reducer returns garbage's pages by then); the agent's highest RSS while it takes the
// 50,000 in and while its successor reads them back, its start-up time without them and what its
// RSS is made of (anonymous vs file-backed, from smaps_rollup) go to stderr.
// Detail lines go to stderr; the last stdout line is one JSON object.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { connectBus } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import {
  RouterIpcacheEvent,
  RouterRouteEvent,
  routerIpcacheSubject,
  routerRouteSubject,
} from '@dyad/contracts';
import type { InputOf } from '@dyad/bus';
import { labDown, labPaths, labUp, readState } from '@dyad/lab';
import type { LabStateValue, NodeRecordValue } from '@dyad/lab';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { repoRoot } from '@dyad/testbed';

const { values: opts } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== 'footprint' && a !== '--'),
  options: {
    pods: { type: 'string', default: '50000' },
    'node-pods': { type: 'string', default: '110' },
  },
});
const PODS = Number(opts.pods);
const NODE_PODS = Number(opts['node-pods']);
const say = (s: string): boolean => process.stderr.write(s + '\n');
const MiB = 1024 * 1024;
const SETTLE_MS = 15_000;

if (process.getuid?.() !== 0) {
  say('bench footprint needs root (the lab)');
  process.exit(2);
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** The highest RSS of `pid`, sampled every 250 ms until stop(). */
function peakRss(pid: number): { stop(): number } {
  let max = 0;
  const sample = () => {
    try {
      max = Math.max(max, rssBytes(pid));
    } catch {
      // gone: the figure is what was seen
    }
  };
  sample();
  const timer = setInterval(sample, 250);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return max;
    },
  };
}

/** What a process's RSS is made of, for stderr: anonymous (heap, buffers) vs file-backed. */
function rssParts(pid: number): string {
  const t = readFileSync(`/proc/${pid}/status`, 'utf8');
  const mib = (k: string) =>
    (Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(t)?.[1] ?? 0) / 1024).toFixed(1);
  return `anonymous ${mib('RssAnon')} + file ${mib('RssFile')} + shmem ${mib('RssShmem')} MiB`;
}

/**
 * The agent's own account of its memory, for stderr: V8's heap (used of total) and external
 * memory (typed arrays, buffers), from its /metrics inside the node's netns.
 */
function agentHeap(n: NodeRecordValue, log: string, from: number): string {
  const served = [
    ...readFileSync(log, 'utf8')
      .slice(from)
      .matchAll(/"health":"(http:[^"]+)".*"msg":"datapath-agent serving"/g),
  ].at(-1)?.[1];
  if (served === undefined) return 'no health URL in its log';
  try {
    const text = execFileSync(
      'nsenter',
      [`--net=/run/netns/${n.netns}`, 'curl', '-sf', `${served}/metrics`],
      { encoding: 'utf8' },
    );
    const v = (name: string) =>
      Number(new RegExp(`^${name} ([0-9.e+]+)`, 'm').exec(text)?.[1] ?? NaN) / MiB;
    return `heap ${v('nodejs_heap_size_used_bytes').toFixed(1)} used of ${v('nodejs_heap_size_total_bytes').toFixed(1)}, external ${v('nodejs_external_memory_bytes').toFixed(1)} MiB`;
  } catch (e) {
    return `metrics unavailable: ${String(e)}`;
  }
}

/** Median of 5 samples 400 ms apart, in MiB (one decimal). */
async function rssMiB(pid: number): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < 5; i++) {
    if (i > 0) await sleep(400);
    xs.push(rssBytes(pid));
  }
  xs.sort((a, b) => a - b);
  return Math.round(((xs[2] ?? 0) / MiB) * 10) / 10;
}

/** RSS of `node args` once it has printed `ready` and idled for a second. */
async function standaloneRss(args: readonly string[]): Promise<number> {
  const child = spawn(process.execPath, args, {
    cwd: repoRoot(),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('ready')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`node ${args.join(' ')} exited ${code}`)));
    });
    await sleep(1000);
    if (child.pid === undefined) throw new Error('no pid');
    return await rssMiB(child.pid);
  } finally {
    child.kill('SIGKILL');
  }
}

function processPid(state: LabStateValue, name: string): number {
  const p = state.processes.find((x) => x.name === name);
  if (p === undefined) throw new Error(`no process ${name} in the lab`);
  return p.pid;
}

function getJson<T>(socketPath: string, path: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET' }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body) as T);
        } catch (e) {
          reject(e instanceof Error ? e : new Error(String(e)));
        }
      });
    });
    req.once('error', reject);
    req.end();
  });
}

async function ipcacheEntries(n: NodeRecordValue): Promise<number> {
  const s = await getJson<{ maps: Array<{ name: string; entries: number }> }>(
    n.apiSocket,
    '/v1/status',
  );
  return s.maps.find((m) => m.name === 'dy_ipcache')?.entries ?? 0;
}

/** True when the agent at `path` answers a CNI VERSION with code 0, as dyad-cni would ask. */
function cniAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ path, allowHalfOpen: true });
    let reply = '';
    const timer = setTimeout(() => s.destroy(), 2000);
    s.once('connect', () =>
      s.end(
        JSON.stringify({
          v: 1,
          env: { CNI_COMMAND: 'VERSION', CNI_PATH: '', CNI_CONTAINERID: '', CNI_IFNAME: '' },
          stdin: JSON.stringify({ cniVersion: '1.1.0' }),
        }),
      ),
    );
    s.on('data', (d: Buffer) => (reply += d.toString()));
    s.once('error', () => resolve(false));
    s.once('close', () => {
      clearTimeout(timer);
      resolve(reply.startsWith('0\n'));
    });
  });
}

async function waitFor(
  what: string,
  ok: () => boolean | Promise<boolean>,
  timeoutMs: number,
  everyMs = 20,
) {
  const until = Date.now() + timeoutMs;
  while (
    !(await Promise.resolve()
      .then(ok)
      .catch(() => false))
  ) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Milliseconds since boot now, and a pid's start, from /proc (10 ms resolution). */
const uptimeMs = (): number => Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000;
function startedMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[19]) * 10; // starttime, in clock ticks of 100 Hz
}

/**
 * Kills node-1's agent (-9) and waits for the supervisor's successor to answer on the CNI
 * socket: milliseconds from the successor's start (the kernel's start time), and its pid.
 */
async function restartAgent(
  statePath: string,
  n: NodeRecordValue,
): Promise<{ ms: number; pid: number }> {
  const current = readState(statePath);
  if (current === undefined) throw new Error('no lab state');
  const pid = processPid(current, `agent-${n.name}`);
  process.kill(pid, 'SIGKILL');
  let successor = 0;
  await waitFor(
    'the supervisor to restart the agent',
    () => {
      const s = readState(statePath);
      successor = s === undefined ? 0 : processPid(s, `agent-${n.name}`);
      return successor !== 0 && successor !== pid;
    },
    60_000,
  );
  const started = startedMs(successor);
  await waitFor(
    'the new agent to answer on its CNI socket',
    () => cniAnswers(n.cniSocket),
    120_000,
  );
  return { ms: Math.round(uptimeMs() - started), pid: successor };
}

/**
 * The remote part of a `pods`-pod cluster as the router publishes it for `node`: per pod one
 * ipcache entry per family, pods `perNode` to a node, each node one route per family. IPv4 pods
 * from 198.19.0.0/16 (a /25 per node, skipping the lab's fabric /24), IPv6 from fd7e:57::/32.
 */
async function publishRemote(
  bus: Bus,
  state: LabStateValue,
  node: NodeRecordValue,
  pods: number,
  perNode: number,
): Promise<number> {
  const fabricOctet = Number(state.fabric.IPv4?.split('.')[2] ?? -1);
  const fabric6 = state.fabric.IPv6?.replace(/::\/64$/, '::') ?? '';
  const v4 = state.families.includes('IPv4');
  const v6 = state.families.includes('IPv6');
  const nodes = Math.ceil(pods / perNode);
  type Ip = InputOf<typeof RouterIpcacheEvent>;
  type Rt = InputOf<typeof RouterRouteEvent>;
  const jobs: Array<() => Promise<unknown>> = [];
  let revision = 1_000_000;
  const block4 = (k: number): [number, number] => {
    const half = k % 2;
    let octet = Math.floor(k / 2);
    if (octet >= fabricOctet) octet++;
    if (octet > 255) throw new Error('too many nodes for 198.19.0.0/16');
    return [octet, half * 128];
  };
  for (let k = 0; k < nodes; k++) {
    const hostNode = `bench-node-${k}`;
    const via4 = `198.19.${fabricOctet}.${100 + (k % 150)}`;
    const via6 = `${fabric6}${(0x1000 + k).toString(16)}`;
    const [o3, o4] = block4(k);
    const routes: Rt[] = [];
    if (v4)
      routes.push({
        op: 'upsert',
        node: node.name,
        revision: ++revision,
        route: {
          family: 'IPv4',
          cidr: `198.19.${o3}.${o4}/25`,
          viaNode: hostNode,
          via: via4,
          mode: 'native',
        },
      });
    if (v6)
      routes.push({
        op: 'upsert',
        node: node.name,
        revision: ++revision,
        route: {
          family: 'IPv6',
          cidr: `fd7e:57:0:${k.toString(16)}::/120`,
          viaNode: hostNode,
          via: via6,
          mode: 'native',
        },
      });
    for (const r of routes)
      if (r.op === 'upsert')
        jobs.push(() =>
          bus.jsPublish(RouterRouteEvent, routerRouteSubject(node.name, r.route.cidr), r),
        );
    for (let i = 0; i < perNode && k * perNode + i < pods; i++) {
      const pod = { namespace: `ns-${k % 100}`, name: `pod-${k}-${i}` };
      const identity = 0x10000 + ((k * perNode + i) % 2000);
      const entries: Ip[] = [];
      if (v4)
        entries.push({
          op: 'upsert',
          node: node.name,
          revision: ++revision,
          entry: {
            prefix: `198.19.${o3}.${o4 + 2 + i}/32`,
            identity,
            kind: 'pod',
            hostNode,
            hostAddress: via4,
            local: false,
            pod,
          },
        });
      if (v6)
        entries.push({
          op: 'upsert',
          node: node.name,
          revision: ++revision,
          entry: {
            prefix: `fd7e:57:0:${k.toString(16)}::${(2 + i).toString(16)}/128`,
            identity,
            kind: 'pod',
            hostNode,
            hostAddress: via6,
            local: false,
            pod,
          },
        });
      for (const e of entries)
        if (e.op === 'upsert')
          jobs.push(() =>
            bus.jsPublish(RouterIpcacheEvent, routerIpcacheSubject(node.name, e.entry.prefix), e),
          );
    }
  }
  const ipcache = jobs.length - nodes * ((v4 ? 1 : 0) + (v6 ? 1 : 0));
  const WINDOW = 256;
  for (let i = 0; i < jobs.length; i += WINDOW)
    await Promise.all(jobs.slice(i, i + WINDOW).map((j) => j()));
  return ipcache;
}

/** node-1's agent's log (every successor appends to it). */
function agentLogOf(): string {
  const log = readState(paths.state)?.processes.find((p) => p.name === 'agent-node-1')?.log;
  if (log === undefined) throw new Error("no log of node-1's agent");
  return log;
}

const paths = labPaths(repoRoot(), join(repoRoot(), '.lab', 'bench-footprint'));
const io = { stdout: process.stderr, stderr: process.stderr };
const floorScript = fileURLToPath(new URL('./support/deps-floor.mjs', import.meta.url));
try {
  const bare = await standaloneRss(['-e', 'console.log("ready"); setInterval(() => {}, 1 << 30)']);
  say(`bare node: ${bare} MiB`);
  const floor = await standaloneRss([floorScript]);
  say(`deps floor: ${floor} MiB`);

  say('▶ lab up (3 nodes, IPv4+IPv6)');
  if ((await labUp(['--nodes', '3'], io, paths)) !== 0) throw new Error('lab up failed');
  const state = readState(paths.state);
  const n1 = state?.nodes.find((n) => n.name === 'node-1');
  if (state?.natsUrl === undefined || n1 === undefined) throw new Error('no NATS or node-1');
  // start-up without cluster state, for comparison with the one below (stderr only); the idle
  // figure is then this successor's, the process that takes the 50,000 in
  const idleReady = await restartAgent(paths.state, n1);
  say(`idle agent ready ${idleReady.ms} ms after its start`);

  // idle: the lab is ready, nothing changes; V8's memory reducer shrinks the heap within
  // seconds of the allocation rate falling, so each figure is taken SETTLE_MS after the work
  await sleep(SETTLE_MS);
  const idle = {
    agent: await rssMiB(idleReady.pid),
    ipam: await rssMiB(processPid(state, 'ipam-1')),
    router: await rssMiB(processPid(state, 'router')),
    kubeBridge: await rssMiB(processPid(state, 'kube-bridge')),
  };
  say(`idle: ${JSON.stringify(idle)}`);
  say(`  idle agent's ${agentHeap(n1, agentLogOf(), 0)}; RSS ${rssParts(idleReady.pid)}`);

  const before = await ipcacheEntries(n1);
  const bus = await connectBus({
    servers: state.natsUrl,
    name: 'bench-footprint',
    // it publishes what the router would: the router's identity
    ...(state.natsCreds === undefined ? {} : { credsFile: join(state.natsCreds, 'router.creds') }),
    ...(state.natsCa === undefined ? {} : { caFile: state.natsCa }),
    logger: createLogger({ service: 'bench', level: 'warn' }),
    registry: createMetrics({ processMetrics: false }),
  });
  let published = 0;
  const peak = peakRss(processPid(readState(paths.state) ?? state, 'agent-node-1'));
  const t0 = performance.now();
  try {
    published = await publishRemote(bus, state, n1, PODS, NODE_PODS);
  } finally {
    await bus.close();
  }
  say(
    `published ${published} ipcache entries and their routes in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  // once a second: /v1/status compares every map with the desired state, work (and garbage) of
  // its own that would be measured with the agent
  await waitFor(
    `node-1's ipcache to hold ${before + published} entries`,
    async () => (await ipcacheEntries(n1)) >= before + published,
    300_000,
    1000,
  );
  say(`in node-1's ipcache after ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  say(`agent's highest RSS meanwhile: ${(peak.stop() / MiB).toFixed(1)} MiB`);
  await sleep(SETTLE_MS);
  const loadedPid = processPid(readState(paths.state) ?? state, 'agent-node-1');
  const loaded = await rssMiB(loadedPid);
  say(`agent with ${PODS} remote pods: ${loaded} MiB (${rssParts(loadedPid)})`);
  say(`  its ${agentHeap(n1, agentLogOf(), 0)}`);

  // ready time: a successor started by the lab's supervisor with all of that in the maps
  const agentLog = agentLogOf();
  const logFrom = statSync(agentLog).size; // appended to by every successor
  const ready = await restartAgent(paths.state, n1);
  const readyMs = ready.ms;
  say(`agent ready ${readyMs} ms after its start (${PODS} remote pods in its maps)`);
  const restartPeak = peakRss(ready.pid);
  // the pinned ipcache holds them all along: the successor's own word says it has read them
  await waitFor(
    `the restarted agent to apply the ${published} entries from its snapshot`,
    () =>
      [
        ...readFileSync(agentLog, 'utf8')
          .slice(logFrom)
          .matchAll(/"routerEntries":(\d+).*"msg":"desired state applied"/g),
      ].some((m) => Number(m[1]) >= published),
    300_000,
  );
  await sleep(SETTLE_MS);
  const restarted = await rssMiB(ready.pid);
  say(`restarted agent's highest RSS meanwhile: ${(restartPeak.stop() / MiB).toFixed(1)} MiB`);
  say(`restarted agent with the same state, settled: ${restarted} MiB (${rssParts(ready.pid)})`);
  say(`  its ${agentHeap(n1, agentLog, logFrom)}`);

  const result = {
    bare_rss_mib: bare,
    deps_floor_rss_mib: floor,
    agent_idle_rss_mib: idle.agent,
    agent_50k_rss_mib: loaded,
    ipam_rss_mib: idle.ipam,
    router_rss_mib: idle.router,
    kube_bridge_rss_mib: idle.kubeBridge,
    agent_ready_ms: readyMs,
    agent_idle_ratio: Math.round((idle.agent / floor) * 100) / 100,
    agent_growth_mib: Math.round((loaded - idle.agent) * 10) / 10,
    agent_restart_50k_rss_mib: restarted,
  };
  console.log(JSON.stringify(result));
} finally {
  await labDown([], io, paths);
}
