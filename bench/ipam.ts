// `npm run bench -- ipam [--nodes N] [--concurrency C] [--trials T]`
// Block assignment through real ipam processes (1, then 2 replicas) against a local nats-server
// (file storage), next to the raw JetStream KV `create` rate measured in the same run:
// - set 0: N Node objects are published as kube-bridge would, all at once; the figure is nodes
//   per second from the first publish until every node's assignment (IpamNodeEvent) has arrived.
//   A set is two block claims (create) and a revision-checked node record write, then the event.
// - grow: one GrowRequest per node (a real CloudEvent, encoded before the clock starts), C in
//   flight; a grow counts once its reply arrived, after its writes were acknowledged.
// The run fails if a reply is not a GrowReply with the node's two sets, or a block is on two
// nodes. Detail lines go to stderr; the last stdout line is the summary JSON.
import { readFileSync, readdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Bus } from '@dyad/bus';
import type { PayloadOf } from '@dyad/contracts';
import {
  GrowReply,
  GrowRequest,
  Header,
  IPAM_KV_BUCKET,
  IpamNodeEvent,
  IpamNodesStream,
  IPAM_NODE_FILTER,
  K8S_STREAM,
  K8sStream,
  encodeEvent,
  ipamGrowSubject,
} from '@dyad/contracts';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, headers as natsHeaders } from '@nats-io/transport-node';
import type { MsgHdrs, NatsConnection } from '@nats-io/transport-node';
import { announceNode, clientBus, metricValue, pool, startReplica } from '@dyad/ipam/testing';
import type { Replica } from '@dyad/ipam/testing';
import { measureNodeAllocator } from './support/node-allocator.ts';
import { Requester } from './support/requester.ts';

const { values: opts } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== 'ipam'),
  options: {
    nodes: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '64' },
    trials: { type: 'string', default: '3' },
  },
});
const NODES = Number(opts.nodes);
const CONCURRENCY = Number(opts.concurrency);
const TRIALS = Math.max(1, Number(opts.trials));

/**
 * IPv4 blocks small enough that the /15 pool is at most a quarter full with two sets per node (at
 * least /24): a nearly full pool is another measurement (every search finds taken blocks).
 */
const V4_MASK = Math.max(24, 17 + Math.ceil(Math.log2(2 * NODES)));
if (V4_MASK > 30) throw new Error(`--nodes ${NODES}: more than the /15 pool has /30 blocks for`);
const ENV: Readonly<Record<string, string>> = {
  DYAD_ENABLE_IPV4: 'true',
  DYAD_ENABLE_IPV6: 'true',
  DYAD_CLUSTER_POOL_IPV4_CIDR: '198.18.0.0/15',
  DYAD_CLUSTER_POOL_IPV4_MASK_SIZE: String(V4_MASK),
  DYAD_CLUSTER_POOL_IPV6_CIDR: 'fd00:d1ad::/104',
  // A fresh bucket each run: no agent holds blocks, nothing to wait for.
  DYAD_IPAM_REBUILD_WAIT_S: '0',
  LOG_LEVEL: 'warn',
};

const log = (...a: unknown[]): void => console.error('[bench ipam]', ...a);

function seconds(t0: number): number {
  return (performance.now() - t0) / 1000;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

/** A value the size of a block claim. */
const BASELINE_VALUE = new TextEncoder().encode(JSON.stringify({ node: 'bench-node-0000', at: 0 }));

/** The baseline: `n` creates of fresh keys, same concurrency, through the official client. */
async function kvCreateRate(nc: NatsConnection, n: number): Promise<number> {
  const kv = await new Kvm(jetstream(nc)).create('BENCH_RAW', { history: 1 });
  const keys = Array.from({ length: n }, (_, i) => `block.IPv4.198-18-${i}-0_26`);
  const t0 = performance.now();
  await pool(keys, CONCURRENCY, (k) => kv.create(k, BASELINE_VALUE));
  const rate = n / seconds(t0);
  await kv.destroy();
  return rate;
}

/** A fresh start: no bucket, no assignments, no nodes (a replica's start reads them all). */
async function resetState(nc: NatsConnection): Promise<void> {
  const jsm = await jetstreamManager(nc);
  for (const s of [`KV_${IPAM_KV_BUCKET}`, IpamNodesStream.name, K8S_STREAM]) {
    await jsm.streams.delete(s).catch(() => undefined);
  }
}

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

/** The pid of the process whose command line mentions `needle` (the nats-server of this run). */
function pidOf(needle: string): number | undefined {
  for (const d of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(needle)) return Number(d);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

/** Cores a set of processes used over a timed section. */
function cores(pids: readonly (number | undefined)[]): () => number[] {
  const t0 = performance.now();
  const c0 = pids.map(cpuSeconds);
  return () => pids.map((p, i) => (cpuSeconds(p) - (c0[i] ?? 0)) / seconds(t0));
}

interface Run {
  readonly nodesPerS: number;
  readonly growsPerS: number;
  readonly growLatenciesMs: number[];
  /** Record writes that lost a race (two replicas on one node's set 0). */
  readonly conflicts: number;
  /** Block claims that found the block taken (two replicas searching one part of the pool). */
  readonly blockConflicts: number;
  /** Cores per replica, then nats-server, during set 0 and during grows. */
  readonly coresSet0: number[];
  readonly coresGrow: number[];
}

function encodeGrow(node: string): { body: Uint8Array; headers: MsgHdrs } {
  const ev = encodeEvent(GrowRequest, { node, sets: 1 }, { source: '/dyad/bench' });
  const h = natsHeaders();
  for (const [k, v] of Object.entries(ev.headers)) h.set(k, v);
  return { body: ev.body, headers: h };
}

async function measure(
  nats: NatsServer,
  bus: Bus,
  nc: NatsConnection,
  replicas: number,
  trial: number,
): Promise<Run> {
  await resetState(nc);
  const procs: Replica[] = [];
  try {
    for (let i = 0; i < replicas; i++) {
      procs.push(await startReplica(nats.url, ENV, `bench-${trial}-${replicas}r-${i}`));
    }
    const pids = [...procs.map((p) => p.proc.pid), pidOf(nats.dir)];
    const names = Array.from({ length: NODES }, (_, i) => `bench-${trial}-${replicas}-${i}`);

    // Set 0: every node announced at once, counted as its assignment arrives.
    const assigned = new Set<string>();
    let allAssigned: () => void = () => undefined;
    const done = new Promise<void>((resolve) => (allAssigned = resolve));
    const sub = bus.subscribe([IpamNodeEvent], IPAM_NODE_FILTER, (d) => {
      if (d.value.op !== 'upsert' || d.value.blocks.length !== 2) return;
      assigned.add(d.value.node);
      if (assigned.size === NODES) allAssigned();
    });
    await bus.flush();
    await bus.ensureStreams([K8sStream]);
    const set0Cores = cores(pids);
    const t0 = performance.now();
    await pool(names, CONCURRENCY, (n) => announceNode(bus, n));
    await done;
    const nodesPerS = NODES / seconds(t0);
    const coresSet0 = set0Cores();
    await sub.stop();

    // Grow: one request per node, C in flight.
    const requests = names.map((n) => ({ node: n, ...encodeGrow(n) }));
    const requester = new Requester(nc);
    const latencies = new Array<number>(NODES);
    const blocks = new Set<string>();
    const text = new TextDecoder();
    const growCores = cores(pids);
    const t1 = performance.now();
    await pool(requests, CONCURRENCY, async (r, i) => {
      const s = performance.now();
      const m = await requester.request(ipamGrowSubject(r.node), r.body, r.headers);
      latencies[i] = performance.now() - s;
      if (m.headers?.get(Header.type) !== GrowReply.type) {
        throw new Error(`grow of ${r.node} refused: ${text.decode(m.data)}`);
      }
      const reply = JSON.parse(text.decode(m.data)) as PayloadOf<typeof GrowReply>;
      if (reply.blocks.length !== 4) throw new Error(`${r.node}: ${reply.blocks.length} blocks`);
      for (const b of reply.blocks) blocks.add(b.cidr);
    });
    const growsPerS = NODES / seconds(t1);
    const coresGrow = growCores();
    requester.close();
    if (blocks.size !== 4 * NODES) {
      throw new Error(`${blocks.size} distinct blocks for ${NODES} nodes of two sets`);
    }
    let conflicts = 0;
    let blockConflicts = 0;
    for (const p of procs) {
      const m = await p.metrics();
      conflicts += metricValue(m, 'dyad_ipam_write_conflicts_total', { key: 'node' });
      blockConflicts += metricValue(m, 'dyad_ipam_write_conflicts_total', { key: 'block' });
    }
    return {
      nodesPerS,
      growsPerS,
      growLatenciesMs: latencies.sort((a, b) => a - b),
      conflicts,
      blockConflicts,
      coresSet0,
      coresGrow,
    };
  } finally {
    await Promise.all(procs.map((p) => p.proc.stop()));
  }
}

function describe(label: string, r: Run): string {
  const c = (xs: number[]) =>
    `cores ${xs
      .slice(0, -1)
      .map((x) => x.toFixed(2))
      .join(' + ')} (nats-server ${(xs.at(-1) ?? 0).toFixed(2)})`;
  return (
    `${label}: set 0 ${r.nodesPerS.toFixed(0)} nodes/s, ${c(r.coresSet0)}; ` +
    `grow ${r.growsPerS.toFixed(0)}/s, p50 ${percentile(r.growLatenciesMs, 50).toFixed(1)} ms, ` +
    `${c(r.coresGrow)}; write conflicts: ${r.conflicts} node, ${r.blockConflicts} block`
  );
}

async function main(): Promise<void> {
  const nats = await startNats();
  // Without async stack traces, as the services run, so the baseline is not slowed by a cost the
  // services do not pay.
  const nc = await connect({ servers: nats.url, name: 'bench-raw', noAsyncTraces: true });
  const bus = await clientBus(nats.url, 'bench-ipam');
  const summary: Record<string, string | number> = { bench: 'ipam' };
  const round = (x: number, d = 0) => Number(x.toFixed(d));
  try {
    log(`${NODES} nodes, ${CONCURRENCY} in flight, ${TRIALS} trials`);
    // Trials interleave baseline, 1 replica and 2 replicas, so drift on a shared machine touches
    // all three alike; each figure is the median over the trials.
    const ones: Run[] = [];
    const twos: Run[] = [];
    const creates: number[] = [];
    for (let t = 1; t <= TRIALS; t++) {
      const kvCreate = await kvCreateRate(nc, 3 * NODES);
      creates.push(kvCreate);
      log(`trial ${t}: raw kv.create: ${kvCreate.toFixed(0)}/s`);
      const one = await measure(nats, bus, nc, 1, t);
      ones.push(one);
      log(describe(`trial ${t}: 1 replica`, one));
      const two = await measure(nats, bus, nc, 2, t);
      twos.push(two);
      log(describe(`trial ${t}: 2 replicas`, two));
    }
    const mid = median(twos.map((r) => r.growsPerS));
    const lat = (twos.find((r) => r.growsPerS === mid) ?? twos[0])?.growLatenciesMs ?? [];
    Object.assign(summary, {
      nodes_per_s_1r: round(median(ones.map((r) => r.nodesPerS))),
      nodes_per_s_2r: round(median(twos.map((r) => r.nodesPerS))),
      grows_per_s_1r: round(median(ones.map((r) => r.growsPerS))),
      grows_per_s_2r: round(mid),
      grow_p50_ms_2r: round(percentile(lat, 50), 2),
      grow_p99_ms_2r: round(percentile(lat, 99), 2),
      kv_create_per_s: round(median(creates)),
    });

    // ---- the node agent's allocator ----
    // Pod addresses are allocated by each node's agent from its blocks (services/datapath-agent).
    Object.assign(summary, await measureNodeAllocator(log));
  } finally {
    await bus.close();
    await nc.close();
    await nats.stop();
  }
  console.log(JSON.stringify(summary));
}

await main();
