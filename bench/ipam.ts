// `npm run bench -- ipam [--pairs N] [--concurrency C] [--per-node P] [--trials T]`
// Dual-stack pod address allocation through real ipam processes (1, then 2 replicas) against a
// local nats-server, next to the raw JetStream KV `create` rate for the same number of keys,
// measured in the same run. Each pair is acknowledged only after its node record write was
// acknowledged by JetStream (file storage). The load generator sends real AllocateRequest
// CloudEvents, encoded before the clock starts, over a plain connection, and reads the reply's
// type header and JSON: so the figure is ipam's, not the generator's. Detail lines go to
// stderr; the last stdout line is the summary JSON.
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { KvWriter } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import {
  AllocateRequest,
  Allocation,
  Header,
  IPAM_KV_BUCKET,
  IpamNodesStream,
  IpamSubject,
  encodeEvent,
} from '@dyad/contracts';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, headers as natsHeaders } from '@nats-io/transport-node';
import type { MsgHdrs, NatsConnection } from '@nats-io/transport-node';
import {
  DUAL_STACK,
  allocate,
  clientBus,
  ipamKv,
  metricValue,
  podRef,
  pool,
  publishNode,
  readRecords,
  startReplica,
} from '../services/ipam/test/harness.ts';
import type { PodRef, Replica } from '../services/ipam/test/harness.ts';
import { Requester } from './support/requester.ts';

const { values: opts } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== 'ipam'),
  options: {
    pairs: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '256' },
    'per-node': { type: 'string', default: '200' },
    trials: { type: 'string', default: '3' },
  },
});
const PAIRS = Number(opts.pairs);
const CONCURRENCY = Number(opts.concurrency);
const PER_NODE = Number(opts['per-node']);
const TRIALS = Math.max(1, Number(opts.trials));
const NODES = Math.ceil(PAIRS / PER_NODE);
const WARMUP_PER_NODE = 10;

const log = (...a: unknown[]): void => console.error('[bench ipam]', ...a);

function seconds(t0: number): number {
  return (performance.now() - t0) / 1000;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

const BASELINE_VALUE = new TextEncoder().encode(
  JSON.stringify({
    namespace: 'default',
    pod: 'p-000000',
    podUid: 'uid-p-000000',
    ips: { IPv4: '198.18.0.2', IPv6: 'fd00:d1ad::2' },
    at: Date.now(),
  }),
);

function baselineKeys(n: number): string[] {
  return Array.from(
    { length: n },
    (_, i) => `ip.IPv4.198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`,
  );
}

/** The baseline: N `create`s of fresh keys, same concurrency, one client connection. */
async function kvCreateRate(nc: NatsConnection, n: number): Promise<number> {
  const kv = await new Kvm(jetstream(nc)).create('BENCH_RAW', { history: 1 });
  const keys = baselineKeys(n);
  const t0 = performance.now();
  await pool(keys, CONCURRENCY, (k) => kv.create(k, BASELINE_VALUE));
  const rate = n / seconds(t0);
  await kv.destroy();
  return rate;
}

/**
 * The same creates through ipam's own writer (@dyad/bus KvWriter: one reply subscription, no
 * per-write timer), so the client costs little: what nats-server takes when the client is cheap.
 */
async function pipelinedCreateRate(nc: NatsConnection, n: number): Promise<number> {
  const kv = await new Kvm(jetstream(nc)).create('BENCH_RAW_PIPELINED', { history: 1 });
  const writer = new KvWriter(nc, 'BENCH_RAW_PIPELINED');
  try {
    const keys = baselineKeys(n);
    const t0 = performance.now();
    await pool(keys, CONCURRENCY, (k) => writer.put(k, BASELINE_VALUE, { previousRevision: 0 }));
    return n / seconds(t0);
  } finally {
    writer.close();
    await kv.destroy();
  }
}

async function resetIpamState(nc: NatsConnection): Promise<void> {
  const jsm = await jetstreamManager(nc);
  for (const s of [`KV_${IPAM_KV_BUCKET}`, IpamNodesStream.name]) {
    await jsm.streams.delete(s).catch(() => undefined);
  }
}

async function waitForNodes(bus: Bus, n: number): Promise<void> {
  const kv = await ipamKv(bus);
  const deadline = Date.now() + 120_000;
  for (;;) {
    const records = await readRecords(kv);
    const full = [...records.values()].filter((r) => r.blocks.IPv4 && r.blocks.IPv6).length;
    if (full >= n) return;
    if (Date.now() > deadline) throw new Error(`only ${full} of ${n} nodes have blocks`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function encodeRequest(p: PodRef): { body: Uint8Array; headers: MsgHdrs } {
  const ev = encodeEvent(
    AllocateRequest,
    {
      node: p.node,
      namespace: p.namespace,
      pod: p.pod,
      podUid: p.podUid,
      containerId: p.containerId,
    },
    { source: '/dyad/bench' },
  );
  const h = natsHeaders();
  for (const [k, v] of Object.entries(ev.headers)) h.set(k, v);
  return { body: ev.body, headers: h };
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

interface Run {
  readonly cpuPerReplica: number[];
  /** Cores used by nats-server and by this process (the load generator) during the run. */
  readonly cpuServer: number;
  readonly cpuGenerator: number;
  readonly pairsPerS: number;
  readonly latenciesMs: number[];
  readonly conflicts: number;
  readonly batches: number;
}

async function measure(
  nats: NatsServer,
  bus: Bus,
  nc: NatsConnection,
  replicas: number,
): Promise<Run> {
  await resetIpamState(nc);
  const procs: Replica[] = [];
  try {
    for (let i = 0; i < replicas; i++) {
      procs.push(
        await startReplica(
          nats.url,
          { ...DUAL_STACK, LOG_LEVEL: 'warn' },
          `bench-${replicas}r-${i}`,
        ),
      );
    }
    await waitForNodes(bus, NODES);
    const node = (i: number): string => `bench-node-${i % NODES}`;
    const warm: PodRef[] = Array.from({ length: NODES * WARMUP_PER_NODE }, (_, i) =>
      podRef(i, node(i), `w${replicas}`),
    );
    await pool(warm, CONCURRENCY, (p) => allocate(bus, p));
    const pods: PodRef[] = Array.from({ length: PAIRS }, (_, i) =>
      podRef(i, node(i), `b${replicas}`),
    );
    const requests = pods.map(encodeRequest);
    const latencies = new Array<number>(PAIRS);
    const seen4 = new Set<string>();
    const seen6 = new Set<string>();
    const cpu0 = procs.map((p) => cpuSeconds(p.proc.pid));
    const serverPid = pidOf(nats.dir);
    const server0 = cpuSeconds(serverPid);
    const requester = new Requester(nc);
    const text = new TextDecoder();
    const gen0 = cpuSeconds(process.pid);
    const t0 = performance.now();
    await pool(requests, CONCURRENCY, async (r, i) => {
      const s = performance.now();
      const m = await requester.request(IpamSubject.allocate, r.body, r.headers);
      latencies[i] = performance.now() - s;
      if (m.headers?.get(Header.type) !== Allocation.type) {
        throw new Error(`allocation ${i} refused: ${text.decode(m.data)}`);
      }
      const a = JSON.parse(text.decode(m.data)) as {
        addresses: { family: string; address: string }[];
      };
      for (const x of a.addresses) (x.family === 'IPv4' ? seen4 : seen6).add(x.address);
    });
    const elapsed = seconds(t0);
    requester.close();
    const cpuPerReplica = procs.map((p, i) => (cpuSeconds(p.proc.pid) - (cpu0[i] ?? 0)) / elapsed);
    const cpuServer = (cpuSeconds(serverPid) - server0) / elapsed;
    const cpuGenerator = (cpuSeconds(process.pid) - gen0) / elapsed;
    if (seen4.size !== PAIRS || seen6.size !== PAIRS) {
      throw new Error(
        `duplicate addresses: ${seen4.size} IPv4 and ${seen6.size} IPv6 for ${PAIRS} pairs`,
      );
    }
    let conflicts = 0;
    let batches = 0;
    for (const r of procs) {
      const m = await r.metrics();
      conflicts += metricValue(m, 'dyad_ipam_write_conflicts_total');
      batches += metricValue(m, 'dyad_ipam_allocations_total', { outcome: 'new' });
    }
    return {
      cpuPerReplica,
      cpuServer,
      cpuGenerator,
      pairsPerS: PAIRS / elapsed,
      latenciesMs: latencies.sort((a, b) => a - b),
      conflicts,
      batches,
    };
  } finally {
    await Promise.all(procs.map((p) => p.proc.stop()));
  }
}

const SUPPORT = (f: string): string => fileURLToPath(new URL(`./support/${f}`, import.meta.url));

/**
 * The same load against two stand-in replicas: what this machine allows, for reading the figures
 * above. `answer-only-replica.ts` goes through @dyad/bus like ipam but allocates and stores
 * nothing; `raw-replica.ts` is plain nats.js, no Dyad code, with 1 or 2 KV creates per request.
 */
async function standInRate(
  nats: NatsServer,
  nc: NatsConnection,
  script: string,
  env: Readonly<Record<string, string>> = {},
): Promise<number> {
  const procs = [0, 1].map(() =>
    spawn(process.execPath, [SUPPORT(script)], {
      env: { PATH: process.env['PATH'], NATS_URL: nats.url, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  const requester = new Requester(nc);
  try {
    await Promise.all(
      procs.map(
        (p) =>
          new Promise<void>((resolve, reject) => {
            p.stdout.once('data', () => resolve());
            p.once('exit', (code) => reject(new Error(`${script} exited (${code})`)));
          }),
      ),
    );
    const requests = Array.from({ length: PAIRS }, (_, i) =>
      encodeRequest(podRef(i, `bench-node-${i % NODES}`, 'a')),
    );
    const ask = async (r: { body: Uint8Array; headers: MsgHdrs }, i: number) => {
      const m = await requester.request(IpamSubject.allocate, r.body, r.headers);
      if (m.headers?.get(Header.type) !== Allocation.type) {
        throw new Error(`${script}: request ${i} failed: ${new TextDecoder().decode(m.data)}`);
      }
    };
    await pool(requests.slice(0, 2000), CONCURRENCY, ask);
    const t0 = performance.now();
    await pool(requests, CONCURRENCY, ask);
    return PAIRS / seconds(t0);
  } finally {
    requester.close();
    for (const p of procs) p.kill();
  }
}

/** Two plain nats.js replicas making `writes` KV creates per request, into a bucket of their own. */
async function rawRate(nats: NatsServer, nc: NatsConnection, writes: number): Promise<number> {
  const kv = await new Kvm(jetstream(nc)).create('BENCH_RAW_REPLICA', { history: 1 });
  try {
    return await standInRate(nats, nc, 'raw-replica.ts', {
      BUCKET: 'BENCH_RAW_REPLICA',
      WRITES: String(writes),
    });
  } finally {
    await kv.destroy();
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

function describe(label: string, r: Run): string {
  const cores = r.cpuPerReplica.map((c) => c.toFixed(2)).join(' + ');
  return (
    `${label}: ${r.pairsPerS.toFixed(0)} pairs/s, ${r.batches} new, ${r.conflicts} write conflicts, ` +
    `cores ${cores} (nats-server ${r.cpuServer.toFixed(2)}, load generator ${r.cpuGenerator.toFixed(2)})`
  );
}

async function main(): Promise<void> {
  const nats = await startNats();
  // Without async stack traces, as the services run, so the baseline is not slowed by a cost the
  // services do not pay. Write coalescing is not applied: for this one client it did not help.
  const nc = await connect({ servers: nats.url, name: 'bench-raw', noAsyncTraces: true });
  const bus = await clientBus(nats.url, 'bench-ipam');
  try {
    log(
      `${PAIRS} dual-stack pairs over ${NODES} nodes, ${CONCURRENCY} requests in flight, ${TRIALS} trials`,
    );
    for (let i = 0; i < NODES; i++) await publishNode(bus, `bench-node-${i}`);

    // Trials interleave baseline, 1 replica and 2 replicas, so drift on a shared machine touches
    // all three alike; each figure is the median over the trials, and the ratio pairs the 2-replica
    // median with the median of the baselines taken right before the 2-replica runs.
    const ones: Run[] = [];
    const twos: Run[] = [];
    const creates: number[] = [];
    for (let t = 1; t <= TRIALS; t++) {
      log(
        `trial ${t}: raw kv.create before 1 replica: ${(await kvCreateRate(nc, PAIRS)).toFixed(0)}/s`,
      );
      const one = await measure(nats, bus, nc, 1);
      ones.push(one);
      log(describe(`trial ${t}: 1 replica`, one));
      const kvCreate = await kvCreateRate(nc, PAIRS);
      creates.push(kvCreate);
      log(`trial ${t}: raw kv.create before 2 replicas: ${kvCreate.toFixed(0)}/s`);
      const two = await measure(nats, bus, nc, 2);
      twos.push(two);
      log(describe(`trial ${t}: 2 replicas`, two));
    }
    log(
      `ceiling: 2 replicas that only answer and publish the event (no allocation, no KV): ` +
        `${(await standInRate(nats, nc, 'answer-only-replica.ts')).toFixed(0)} requests/s`,
    );
    // Plain nats.js with no Dyad code, each next to a baseline taken right before it.
    for (const writes of [2, 1]) {
      const base = await kvCreateRate(nc, PAIRS);
      const raw = await rawRate(nats, nc, writes);
      log(
        `floor: 2 plain nats.js replicas, ${writes} KV create${writes > 1 ? 's' : ''} per pair, ` +
          `no Dyad code: ${raw.toFixed(0)} requests/s, ${(raw / base).toFixed(2)} of kv.create (${base.toFixed(0)}/s)`,
      );
    }
    // How much of the baseline is client CPU: the server alone, when the client is cheap.
    const baseline = await kvCreateRate(nc, PAIRS);
    const pipelined = await pipelinedCreateRate(nc, PAIRS);
    log(
      `server: the same creates through ipam's pipelined writer: ${pipelined.toFixed(0)}/s, ` +
        `${(pipelined / baseline).toFixed(2)} x kv.create (${baseline.toFixed(0)}/s)`,
    );
    const one = median(ones.map((r) => r.pairsPerS));
    const two = median(twos.map((r) => r.pairsPerS));
    const kvCreate = median(creates);
    // Latencies of the 2-replica trial whose rate is the median.
    const mid = twos.find((r) => r.pairsPerS === two) ?? twos[0];
    const lat = mid?.latenciesMs ?? [];
    const round = (x: number, d = 0) => Number(x.toFixed(d));
    console.log(
      JSON.stringify({
        bench: 'ipam',
        pairs_per_s_1r: round(one),
        pairs_per_s_2r: round(two),
        p50_ms: round(percentile(lat, 50), 2),
        p99_ms: round(percentile(lat, 99), 2),
        kv_create_per_s: round(kvCreate),
        kv_create_ratio: round(two / kvCreate, 3),
      }),
    );
  } finally {
    await bus.close();
    await nc.close();
    await nats.stop();
  }
}

await main();
