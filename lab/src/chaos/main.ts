// `npm run chaos [-- --profile short|long] [--reuse] [--keep] [--only <part of a fault's name>]`: brings up a lab in .lab/chaos
// (or reuses a ready one with --reuse), creates and deletes pods at a steady rate, and runs the
// faults one at a time; after each, the invariants must hold. One line per fault, then one JSON
// object as the last line. Exit 0 when no fault left a violation.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { connectBus, kvStreamName } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import { agentGet } from '@dyad/cli';
import {
  AGENT_STREAM,
  ALL_KV_BUCKETS,
  ALL_STREAMS,
  EndpointReport,
  IPAM_NODES_STREAM,
  IpamNodeEvent,
  IPAM_NODE_FILTER,
  K8S_STREAM,
  K8sKind,
  PodEvent,
  ROUTER_STREAM,
  routerIpcacheFilter,
  RouterIpcacheEvent,
  agentEndpointFilter,
  decodeToken,
  k8sKindFilter,
} from '@dyad/contracts';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { repoRoot } from '@dyad/testbed';
import { labDown, labUp } from '../commands.ts';
import { ControlClient } from '../control.ts';
import { KubeClient } from '../kube-client.ts';
import { labPaths } from '../paths.ts';
import type { LabPaths } from '../paths.ts';
import { listPodRecords } from '../records.ts';
import type { PodRecordValue } from '../records.ts';
import { readState } from '../state.ts';
import type { LabStateValue } from '../state.ts';
import { CHAOS_NAMESPACE, Churn, ECHO_PORT, podBody } from './churn.ts';
import type { OpCounts } from './churn.ts';
import { ConnectivityMonitor, addressOf } from './connectivity.ts';
import type { Family } from '@dyad/netaddr';
import { faults } from './faults.ts';
import type { Fault, FaultContext } from './faults.ts';
import { violations } from './invariants.ts';
import type { BusFact, EndpointFact, NodeFact, PodFact, Snapshot } from './invariants.ts';
import { PROFILES, graceEnv } from './profile.ts';
import type { ChaosProfile } from './profile.ts';

export interface FaultReport {
  readonly fault: string;
  readonly ops: OpCounts;
  readonly gapMs: Record<string, number>;
  readonly violations: number;
  readonly convergedMs: number;
  readonly problems: readonly string[];
}

const say = (line: string): void => void process.stdout.write(line + '\n');

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      profile: { type: 'string', default: 'short' },
      reuse: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      'lab-dir': { type: 'string' },
      only: { type: 'string' },
    },
  });
  const profile = PROFILES[values.profile as ChaosProfile['name']] as ChaosProfile | undefined;
  if (profile === undefined) {
    process.stderr.write(`--profile is short or long, not ${values.profile}\n`);
    return 2;
  }
  const paths = labPaths(repoRoot(), values['lab-dir'] ?? join(repoRoot(), '.lab', 'chaos'));
  const started = Date.now();
  let lab = readState(paths.state);
  if (!values.reuse || lab?.phase !== 'ready') {
    // the lab hands its environment to every service: the profile's small GC graces
    Object.assign(process.env, graceEnv(profile));
    say(`chaos: lab up in ${paths.dir}`);
    const code = await labUp(
      ['--nodes', '3'],
      { stdout: process.stderr, stderr: process.stderr },
      paths,
    );
    if (code !== 0) {
      say(JSON.stringify({ profile: profile.name, error: 'lab up failed', violations: null }));
      return 1;
    }
    lab = readState(paths.state);
  }
  if (lab?.tls === undefined || lab.apiserver === undefined)
    throw new Error('the lab has no apiserver');
  const kube = new KubeClient(lab.apiserver, lab.tls);
  try {
    return await suite(profile, paths, lab, kube, started, values.only);
  } finally {
    kube.close();
    if (!values.keep) await labDown([], { stdout: process.stderr, stderr: process.stderr }, paths);
  }
}

async function suite(
  profile: ChaosProfile,
  paths: LabPaths,
  lab: LabStateValue,
  kube: KubeClient,
  started: number,
  only: string | undefined,
): Promise<number> {
  const nodes = lab.nodes.map((n) => n.name);
  const families = lab.families as Family[];
  await kube.tryCall(
    'POST',
    '/api/v1/namespaces',
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: CHAOS_NAMESPACE } },
    undefined,
    [409],
  );
  // one long-lived pod per node: the connectivity meter's endpoints
  for (const node of nodes)
    await kube.tryCall(
      'POST',
      `/api/v1/namespaces/${CHAOS_NAMESPACE}/pods`,
      podBody(`sentinel-${node}`, node, 'sentinel'),
      undefined,
      [409],
    );
  const sentinels = await waitRecords(
    paths,
    nodes.map((n) => `sentinel-${n}`),
    families.length,
  );
  const monitor = new ConnectivityMonitor(sentinels, families);
  const churn = new Churn(kube, nodes, profile.churnIntervalMs, profile.steadyPods);
  const ctx: FaultContext = { statePath: paths.state, logsDir: paths.logs, kube, profile, say };
  const bus = await connectBus({
    servers: (lab.natsUrl ?? '').split(','),
    name: 'chaos',
    ...(lab.natsCreds === undefined ? {} : { credsFile: join(lab.natsCreds, 'operator.creds') }),
    ...(lab.natsCa === undefined ? {} : { caFile: lab.natsCa }),
    logger: createLogger({ service: 'chaos', level: 'silent' }),
    registry: createMetrics(),
  });
  monitor.start();
  const reports: FaultReport[] = [];
  try {
    // a baseline: the invariants hold before anything is broken
    reports.push(
      await runOne(
        {
          name: 'baseline (no fault)',
          run: async () => {
            await sleep(profile.settleMs);
            return undefined;
          },
        },
        ctx,
        churn,
        monitor,
        bus,
        paths,
        families,
        nodes,
      ),
    );
    for (let round = 0; round < profile.rounds; round++)
      for (const fault of faults(nodes).filter((f) => only === undefined || f.name.includes(only)))
        reports.push(await runOne(fault, ctx, churn, monitor, bus, paths, families, nodes));
  } finally {
    await churn.pause();
    await monitor.stop();
    await bus.close();
  }
  const total = reports.reduce((a, r) => a + r.violations, 0);
  say(
    JSON.stringify({
      profile: profile.name,
      faults: reports.map((r) => ({
        fault: r.fault,
        ...r.ops,
        gapMs: r.gapMs,
        violations: r.violations,
        convergedMs: r.convergedMs,
      })),
      violations: total,
      durationS: Math.round((Date.now() - started) / 1000),
    }),
  );
  return total === 0 ? 0 : 1;
}

async function runOne(
  fault: Fault,
  ctx: FaultContext,
  churn: Churn,
  monitor: ConnectivityMonitor,
  bus: Bus,
  paths: LabPaths,
  families: readonly Family[],
  nodes: readonly string[],
): Promise<FaultReport> {
  churn.takeCounts();
  monitor.meter.take(Date.now());
  churn.start();
  const problems: string[] = [];
  try {
    const window = await fault.run(ctx);
    if (window && fault.isolates !== undefined) {
      // the isolated node forwards with its last state: no probe from or to it may fail
      for (const f of monitor.failuresBetween(window.from, window.to))
        problems.push(`during the fault: ${f.from}->${f.to} ${f.family} ${f.reason}`);
    }
  } catch (err) {
    problems.push(
      `the fault did not run or heal: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  await sleep(ctx.profile.settleMs);
  await churn.pause();
  const ops = churn.takeCounts();
  const healed = Date.now();
  let last: string[];
  for (;;) {
    last = violations(await snapshot(ctx.kube, bus, paths, families, nodes, churn.deleted));
    if (last.length === 0 || Date.now() - healed > ctx.profile.convergeMs) break;
    await sleep(1000);
  }
  const convergedMs = Date.now() - healed;
  problems.push(...last);
  const gapMs = monitor.meter.take(Date.now());
  const report: FaultReport = {
    fault: fault.name,
    ops,
    gapMs,
    violations: problems.length,
    convergedMs,
    problems,
  };
  say(
    `${fault.name.padEnd(58)} ops ${ops.attempted} failed ${ops.failed} retried ${ops.retried}  ` +
      `gap ${families.map((f) => `${f} ${gapMs[f] ?? 0} ms`).join(' ')}  converged ${convergedMs} ms  violations ${problems.length}`,
  );
  for (const p of problems.slice(0, 10)) say(`    ${p}`);
  return report;
}

/** Until the named pods have records with an address per family. */
async function waitRecords(
  paths: LabPaths,
  names: readonly string[],
  families: number,
): Promise<PodRecordValue[]> {
  const end = Date.now() + 120_000;
  for (;;) {
    const recs = listPodRecords(paths.pods).filter(
      (p) => p.namespace === CHAOS_NAMESPACE && names.includes(p.name),
    );
    if (recs.length === names.length && recs.every((r) => r.podIPs.length === families))
      return recs;
    if (Date.now() > end) throw new Error(`pods not running: ${names.join(', ')}`);
    await sleep(200);
  }
}

interface PodItem {
  metadata: { name: string; deletionTimestamp?: string };
  spec: { nodeName?: string };
  status?: { podIPs?: Array<{ ip: string }> };
}

async function snapshot(
  kube: KubeClient,
  bus: Bus,
  paths: LabPaths,
  families: readonly Family[],
  nodes: readonly string[],
  deleted: ReadonlySet<string>,
): Promise<Snapshot> {
  const lab = readState(paths.state);
  const list = await kube
    .call<{ items: PodItem[] }>('GET', `/api/v1/namespaces/${CHAOS_NAMESPACE}/pods`)
    .catch(() => ({ items: [] as PodItem[] }));
  const pods: PodFact[] = [];
  const terminating = new Set<string>();
  for (const p of list.items) {
    if (p.metadata.deletionTimestamp !== undefined) terminating.add(p.metadata.name);
    else
      pods.push({
        name: p.metadata.name,
        node: p.spec.nodeName ?? '',
        podIPs: (p.status?.podIPs ?? []).map((x) => x.ip),
      });
  }
  const endpoints: EndpointFact[] = [];
  const nodeFacts: NodeFact[] = [];
  for (const name of nodes) {
    const socket = lab?.nodes.find((n) => n.name === name)?.apiSocket ?? '';
    try {
      const [eps, st] = await Promise.all([
        agentGet(socket, 'endpoints', 5000),
        agentGet(socket, 'status', 5000),
      ]);
      for (const e of eps.body)
        if (e.pod.namespace === CHAOS_NAMESPACE)
          endpoints.push({
            node: name,
            pod: e.pod.name,
            phase: e.phase,
            addresses: [e.ipv4, e.ipv6].filter((a): a is string => a !== undefined),
          });
      nodeFacts.push({
        node: name,
        blocks: st.body.families.filter((f) => f.cidr !== undefined).map((f) => f.family),
        ...(st.body.drift === undefined ? {} : { drift: st.body.drift }),
      });
    } catch (err) {
      nodeFacts.push({
        node: name,
        unreachable: err instanceof Error ? err.message : String(err),
        blocks: [],
      });
    }
  }
  const live = new Set(pods.map((p) => p.name));
  const bridged = await bus
    .snapshot([PodEvent], {
      stream: K8S_STREAM,
      filterSubjects: [k8sKindFilter(K8sKind.Pod)],
    })
    .then(
      (m) =>
        new Map(
          [...m.values()]
            .filter((d) => d.value.object.metadata.namespace === CHAOS_NAMESPACE)
            .map((d) => [d.value.object.metadata.name, d.value.op] as const),
        ),
      (err: unknown) => (err instanceof Error ? err.message : String(err)),
    );
  const records = listPodRecords(paths.pods).filter(
    (r) => r.namespace === CHAOS_NAMESPACE && live.has(r.name),
  );
  return {
    families,
    pods,
    terminating,
    deleted,
    endpoints,
    nodes: nodeFacts,
    bridged,
    matrixFailures: await matrix(records, pods, families),
    bus: await busFact(bus, lab).catch((err: unknown) =>
      err instanceof Error ? err.message : String(err),
    ),
  };
}

interface Jsz {
  account_details?: Array<{
    stream_detail?: Array<{ name: string; config?: { num_replicas?: number } }>;
  }>;
}

/** What the bus holds: the streams (from a server's /jsz) and the owners' records. */
async function busFact(bus: Bus, lab: LabStateValue | undefined): Promise<BusFact> {
  const members = lab?.nats ?? [];
  let jsz: Jsz | undefined;
  for (const m of members) {
    const res = await fetch(`${m.monitorUrl}/jsz?accounts=true&streams=true&config=true`).catch(
      () => undefined,
    );
    if (res?.ok === true) {
      jsz = (await res.json()) as Jsz;
      break;
    }
  }
  if (jsz === undefined) throw new Error('no NATS server answered /jsz');
  const have = new Map<string, number | undefined>();
  for (const a of jsz.account_details ?? [])
    for (const d of a.stream_detail ?? []) have.set(d.name, d.config?.num_replicas ?? 1);
  const streams = new Map<string, number | undefined>();
  for (const name of [
    ...ALL_STREAMS.map((x) => x.name),
    ...ALL_KV_BUCKETS.map((x) => kvStreamName(x.bucket)),
  ])
    streams.set(name, have.get(name));
  const [nodesSnap, endpoints, ipcache] = await Promise.all([
    bus.snapshot([IpamNodeEvent], {
      stream: IPAM_NODES_STREAM,
      filterSubjects: [IPAM_NODE_FILTER],
    }),
    bus.snapshot([EndpointReport], {
      stream: AGENT_STREAM,
      filterSubjects: [agentEndpointFilter()],
    }),
    bus.snapshot([RouterIpcacheEvent], {
      stream: ROUTER_STREAM,
      filterSubjects: [routerIpcacheFilter()],
    }),
  ]);
  const byNode = new Map<string, Set<string>>();
  for (const [subject, d] of ipcache) {
    if (d.value.op !== 'upsert') continue;
    const node = decodeToken(subject.split('.')[4] ?? '');
    const set = byNode.get(node) ?? new Set<string>();
    set.add(d.value.entry.prefix);
    byNode.set(node, set);
  }
  return {
    streams,
    replicas: Math.max(1, members.length),
    ipamNodes: new Set(
      [...nodesSnap.values()].filter((d) => d.value.op === 'upsert').map((d) => d.value.node),
    ),
    endpointRecords: new Set(
      [...endpoints.values()]
        .filter(
          (d) => d.value.op === 'upsert' && d.value.endpoint.pod.namespace === CHAOS_NAMESPACE,
        )
        .map((d) => d.value.endpoint.pod.name),
    ),
    ipcache: byNode,
  };
}

/** Every ordered pair of running pods, each family, TCP to the echo port. */
async function matrix(
  records: readonly PodRecordValue[],
  pods: readonly PodFact[],
  families: readonly Family[],
): Promise<string[]> {
  const out: string[] = [];
  for (const p of pods)
    if (!records.some((r) => r.name === p.name)) out.push(`${p.name} is not running`);
  const clients = new Map(records.map((r) => [r.name, new ControlClient(r.control)]));
  try {
    await Promise.all(
      records.flatMap((src) =>
        records
          .filter((d) => d !== src)
          .flatMap((dst) =>
            families.map(async (f) => {
              const to = addressOf(dst, f);
              if (to === undefined) return;
              const r = await (clients.get(src.name) as ControlClient).probe(
                'TCP',
                to,
                ECHO_PORT,
                1000,
              );
              if (r.result !== 'connected')
                out.push(`${src.name}->${dst.name} ${f} ${r.reason ?? r.result ?? ''}`);
            }),
          ),
      ),
    );
  } finally {
    for (const c of clients.values()) c.close();
  }
  return out;
}

try {
  process.exitCode = await main();
} catch (err) {
  // the last line stays one JSON object, whatever happened
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`${err instanceof Error ? (err.stack ?? message) : message}\n`);
  say(JSON.stringify({ error: message, violations: null }));
  process.exitCode = 1;
}
