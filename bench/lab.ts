// `npm run bench -- lab [--pods 50] [--seconds 5] [--reps 3] [--kubelet]`
// On a fresh 3-node dual-stack lab (in .lab/bench, not the user's lab):
//  - reach: time from a Pod's create call to the apiserver until a TCP connection to it from a
//    pod on another node succeeds, per family, over --pods pods created one after another;
//  - throughput: iperf3 TCP pod to pod across nodes through Dyad, divided by iperf3 between two
//    plain netns joined by the same kind of path without Dyad (veth, routing netns, veth, bridge
//    netns, veth, routing netns, veth), measured in the same run: each rep runs both paths back
//    to back, and the ratio is the median of the reps' ratios (a 2-core machine's throughput
//    drifts with whatever else runs; pairing cancels most of that).
// --kubelet: the lab's kubelet mode (real kubelets and containerd 1.6 on the nodes; pods use the
// pause image, and a pod counts as created-to-reachable through the kubelet's sandbox, CNI ADD
// and status report; Dyad installed with helm, `install_s` from `helm install` to every agent
// ready). It also splits each pod's start-up (bench/README.md, "kubelet mode: where the time
// goes"): create → CNI ADD started, the ADD, ADD done → status.podIPs, podIPs → the lab's pod
// record, record → reachable. Needs root. Detail lines go to stderr; the last stdout line is
// the summary JSON.
import { FAMILIES } from '@dyad/netaddr';
import type { Family } from '@dyad/netaddr';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { repoRoot } from '@dyad/testbed';
import { Prober, labDown, labPaths, labUp, readState } from '@dyad/lab';
import type { PodRecordValue } from '@dyad/lab';
import { createNamespace, labKube, waitPodRecord } from './support/lab-session.ts';
import { readAgentAdds, waitIcmp, waitPodIps } from './support/kubelet-split.ts';

const { values: opts } = parseArgs({
  // `npm run bench -- lab -- --kubelet` hands the separator through
  args: process.argv.slice(2).filter((a) => a !== 'lab' && a !== '--'),
  options: {
    pods: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '5' },
    reps: { type: 'string', default: '5' },
    kubelet: { type: 'boolean', default: false },
  },
});
const PODS = Number(opts.pods);
const SECONDS = Number(opts.seconds);
const REPS = Number(opts.reps);
const PORT = 8080;
const NS = 'bench';
const say = (s: string): boolean => process.stderr.write(s + '\n');

if (process.getuid?.() !== 0) {
  say('bench lab needs root');
  process.exit(2);
}

function sh(
  cmd: string,
  args: readonly string[],
): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('close', (code) => resolve({ code: code ?? 1, out, err }));
  });
}

async function must(cmd: string, ...args: string[]): Promise<string> {
  const r = await sh(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.err}`);
  return r.out;
}

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
}

function podBody(name: string, node: string) {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS },
    spec: {
      nodeName: node,
      containers: [
        {
          name: 'main',
          ...(opts.kubelet
            ? { image: 'dyad-pause:0.1.0', imagePullPolicy: 'Never' }
            : { image: 'none' }),
          ports: [{ name: 'echo', containerPort: PORT }],
        },
      ],
    },
  };
}

const waitRecord = (podsDir: string, name: string, timeoutMs: number) =>
  waitPodRecord(podsDir, NS, name, { families: FAMILIES.length, timeoutMs, pollMs: 2 });

/** Milliseconds from `t0` until `from` connects to `address` (fresh 30 ms attempts back to back). */
async function reachFrom(
  prober: Prober,
  from: string,
  address: string,
  t0: number,
): Promise<number> {
  const until = Date.now() + 30_000;
  for (;;) {
    const r = await prober.probeAddress(from, address, PORT, 'TCP', 30);
    if (r.result === 'connected') return performance.now() - t0;
    if (Date.now() > until)
      throw new Error(`${address} not reachable from ${from} after 30 s: ${r.reason}`);
  }
}

/** iperf3 TCP from netns `client` to `address` served in netns `server`, bits per second received. */
async function iperf(server: string, client: string, address: string): Promise<number> {
  const srv = spawn('nsenter', [`--net=/run/netns/${server}`, 'iperf3', '-s', '-1', '-p', '5201'], {
    stdio: 'ignore',
  });
  try {
    for (let attempt = 0; ; attempt++) {
      await sleep(200);
      const r = await sh('nsenter', [
        `--net=/run/netns/${client}`,
        'iperf3',
        '-c',
        address,
        '-p',
        '5201',
        '-t',
        String(SECONDS),
        '-O',
        '1',
        '-J',
      ]);
      if (r.code === 0) {
        const j = JSON.parse(r.out) as { end: { sum_received: { bits_per_second: number } } };
        return j.end.sum_received.bits_per_second;
      }
      if (attempt > 20) throw new Error(`iperf3 to ${address}: ${r.out.slice(0, 300)} ${r.err}`);
    }
  } finally {
    srv.kill('SIGKILL');
  }
}

/**
 * The baseline: the Dyad path's shape with kernel routing instead of eBPF. a —veth— r1 —veth—
 * bridge —veth— r2 —veth— b, both families, addresses from 198.18.0.0/15 and fd00::/8.
 */
async function buildBaseline(
  prefix: string,
): Promise<{ a: string; b: string; addr: Record<Family, string>; names: string[] }> {
  const n = (s: string) => `${prefix}-${s}`;
  const names = ['a', 'r1', 'f', 'r2', 'b'].map(n);
  for (const ns of names) {
    await must('ip', 'netns', 'add', ns);
    await must('ip', '-n', ns, 'link', 'set', 'lo', 'up');
  }
  const veth = async (ns1: string, if1: string, ns2: string, if2: string) => {
    await must(
      'ip',
      '-n',
      ns1,
      'link',
      'add',
      if1,
      'type',
      'veth',
      'peer',
      'name',
      if2,
      'netns',
      ns2,
    );
    await must('ip', '-n', ns1, 'link', 'set', if1, 'up');
    await must('ip', '-n', ns2, 'link', 'set', if2, 'up');
  };
  const addr = async (ns: string, dev: string, a: string) => {
    await must('ip', '-n', ns, 'addr', 'add', a, 'dev', dev, ...(a.includes(':') ? ['nodad'] : []));
  };
  const [A, R1, F, R2, B] = names as [string, string, string, string, string];
  await must('ip', '-n', F, 'link', 'add', 'br0', 'type', 'bridge');
  await must('ip', '-n', F, 'link', 'set', 'br0', 'up');
  await veth(A, 'eth0', R1, 'pa');
  await veth(R1, 'eth1', F, 'p1');
  await veth(R2, 'eth1', F, 'p2');
  await veth(B, 'eth0', R2, 'pb');
  await must('ip', '-n', F, 'link', 'set', 'p1', 'master', 'br0');
  await must('ip', '-n', F, 'link', 'set', 'p2', 'master', 'br0');
  await addr(A, 'eth0', '198.18.248.1/24');
  await addr(A, 'eth0', 'fd00:b1::1/64');
  await addr(R1, 'pa', '198.18.248.254/24');
  await addr(R1, 'pa', 'fd00:b1::fe/64');
  await addr(R1, 'eth1', '198.18.249.1/24');
  await addr(R1, 'eth1', 'fd00:b2::1/64');
  await addr(R2, 'eth1', '198.18.249.2/24');
  await addr(R2, 'eth1', 'fd00:b2::2/64');
  await addr(R2, 'pb', '198.18.250.254/24');
  await addr(R2, 'pb', 'fd00:b3::fe/64');
  await addr(B, 'eth0', '198.18.250.1/24');
  await addr(B, 'eth0', 'fd00:b3::1/64');
  for (const r of [R1, R2]) {
    await must('nsenter', `--net=/run/netns/${r}`, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1');
    await must(
      'nsenter',
      `--net=/run/netns/${r}`,
      'sysctl',
      '-q',
      '-w',
      'net.ipv6.conf.all.forwarding=1',
    );
  }
  await must('ip', '-n', A, 'route', 'add', 'default', 'via', '198.18.248.254');
  await must('ip', '-n', A, '-6', 'route', 'add', 'default', 'via', 'fd00:b1::fe');
  await must('ip', '-n', B, 'route', 'add', 'default', 'via', '198.18.250.254');
  await must('ip', '-n', B, '-6', 'route', 'add', 'default', 'via', 'fd00:b3::fe');
  await must('ip', '-n', R1, 'route', 'add', '198.18.250.0/24', 'via', '198.18.249.2');
  await must('ip', '-n', R1, '-6', 'route', 'add', 'fd00:b3::/64', 'via', 'fd00:b2::2');
  await must('ip', '-n', R2, 'route', 'add', '198.18.248.0/24', 'via', '198.18.249.1');
  await must('ip', '-n', R2, '-6', 'route', 'add', 'fd00:b1::/64', 'via', 'fd00:b2::1');
  return { a: A, b: B, addr: { IPv4: '198.18.250.1', IPv6: 'fd00:b3::1' }, names };
}

/**
 * p50/p99 of each part of the pods' start-up (kubelet mode). The ADD's instants come from the
 * agents' "ADD done" log lines in the nodes' /var/log/pods.
 */
function startupSplit(
  pods: ReadonlyArray<{
    name: string;
    created: number;
    podIps: number;
    icmp: Record<Family, number>;
    record: number;
    reach: Record<Family, number>;
  }>,
): Record<string, number> {
  const adds = readAgentAdds(
    ['node-1', 'node-2', 'node-3'].map((n) => join(dir, 'kubelet', n, 'host', 'pod-logs')),
  );
  const parts: Record<string, number[]> = {};
  const put = (k: string, v: number) => (parts[k] ??= []).push(v);
  let missing = 0;
  for (const p of pods) {
    const add = adds.get(`${NS}/${p.name}`);
    if (add === undefined) {
      missing++;
      continue;
    }
    put('created_to_add', add.startedAt - p.created);
    put('add', add.doneAt - add.startedAt);
    put('add_to_podips', p.podIps - add.doneAt);
    put('podips_to_record', p.record - p.podIps);
    for (const f of FAMILIES) {
      const fam = f === 'IPv4' ? 'ipv4' : 'ipv6';
      put(`podips_to_icmp_${fam}`, p.icmp[f] - p.podIps);
      put(`record_to_reach_${fam}`, p.reach[f] - p.record);
    }
  }
  if (missing > 0) say(`  ${missing} pods without an "ADD done" line in the agents' logs`);
  const out: Record<string, number> = {};
  for (const [k, xs] of Object.entries(parts)) {
    const fam = /_(ipv[46])$/.exec(k);
    const base = fam ? k.slice(0, -fam[0].length) : k;
    const tail = fam ? `_${fam[1]}` : '';
    out[`${base}_p50_ms${tail}`] = Math.round(percentile(xs, 50));
    out[`${base}_p99_ms${tail}`] = Math.round(percentile(xs, 99));
    say(`  ${k}: p50 ${percentile(xs, 50).toFixed(0)} ms, p99 ${percentile(xs, 99).toFixed(0)} ms`);
  }
  return out;
}

const dir = join(repoRoot(), '.lab', 'bench');
mkdirSync(dir, { recursive: true });
const paths = labPaths(repoRoot(), dir);
const io = { stdout: process.stderr, stderr: process.stderr };
const baselinePrefix = `db${randomBytes(2).toString('hex')}`;
let baselineNames: string[] = [];

async function cleanup(): Promise<void> {
  for (const ns of baselineNames) await sh('ip', ['netns', 'del', ns]);
  await labDown([], { stdout: process.stderr, stderr: process.stderr }, paths);
}
process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));

try {
  say(`▶ lab up (3 nodes, IPv4+IPv6${opts.kubelet ? ', kubelet mode' : ''})`);
  const upArgs = ['--nodes', '3', ...(opts.kubelet ? ['--kubelet'] : [])];
  if ((await labUp(upArgs, io, paths)) !== 0) throw new Error('lab up failed');
  // kubelet mode: `helm install` of deploy/ until every node's agent is ready (the lab times it)
  const installS = opts.kubelet ? readState(paths.state)?.installSeconds : undefined;
  if (opts.kubelet && installS === undefined)
    throw new Error('the kubelet lab recorded no install time');
  if (installS !== undefined) say(`  helm install to every agent ready: ${installS.toFixed(1)} s`);
  const kube = labKube(paths);
  await createNamespace(kube, NS);
  await kube.call('POST', `/api/v1/namespaces/${NS}/pods`, podBody('src', 'node-1'));
  const src = await waitRecord(paths.pods, 'src', 60_000);
  const prober = new Prober({ podsDir: paths.pods });

  say(
    `▶ reach: ${PODS} pods, created one after another on node-2 and node-3, probed from ${NS}/src on node-1`,
  );
  const reach: Record<Family, number[]> = { IPv4: [], IPv6: [] };
  const running: number[] = [];
  const targets: PodRecordValue[] = [];
  // kubelet mode, per pod, wall-clock ms (the agents' logs use the same clock)
  const instants: Array<{
    name: string;
    created: number;
    podIps: number;
    icmp: Record<Family, number>;
    record: number;
    reach: Record<Family, number>;
  }> = [];
  for (let i = 0; i < PODS; i++) {
    const name = `p${i}`;
    const created = Date.now();
    const t0 = performance.now();
    await kube.call(
      'POST',
      `/api/v1/namespaces/${NS}/pods`,
      podBody(name, i % 2 === 0 ? 'node-2' : 'node-3'),
    );
    // kubelet mode: podIPs as the apiserver shows them, then ICMP to each from node-1's pod
    const podIps = opts.kubelet
      ? waitPodIps(kube, NS, name, { families: FAMILIES.length, timeoutMs: 60_000, pollMs: 10 })
      : undefined;
    const icmp = podIps?.then(({ ips }) =>
      Promise.all(
        FAMILIES.map((f) =>
          waitIcmp(
            prober,
            `${NS}/src`,
            ips.find((ip) => ip.includes(':') === (f === 'IPv6')) ?? '',
            30_000,
          ),
        ),
      ),
    );
    const rec = await waitRecord(paths.pods, name, 60_000);
    const record = Date.now();
    running.push(performance.now() - t0);
    targets.push(rec);
    const ms = await Promise.all(
      FAMILIES.map((f) => {
        const address = rec.podIPs.find((ip) => ip.includes(':') === (f === 'IPv6')) ?? '';
        return reachFrom(prober, `${NS}/src`, address, t0);
      }),
    );
    FAMILIES.forEach((f, k) => reach[f].push(ms[k] ?? NaN));
    if (podIps !== undefined && icmp !== undefined) {
      const [v4, v6] = await icmp;
      instants.push({
        name,
        created,
        podIps: (await podIps).at,
        icmp: { IPv4: v4 ?? NaN, IPv6: v6 ?? NaN },
        record,
        reach: { IPv4: created + (ms[0] ?? NaN), IPv6: created + (ms[1] ?? NaN) },
      });
    }
    if (i % 10 === 9)
      say(`  ${i + 1} pods: last IPv4 ${ms[0]?.toFixed(0)} ms, IPv6 ${ms[1]?.toFixed(0)} ms`);
  }
  prober.close();
  const split = opts.kubelet ? startupSplit(instants) : {};
  for (const f of FAMILIES) {
    say(
      `  ${f}: p50 ${percentile(reach[f], 50).toFixed(0)} ms, p99 ${percentile(reach[f], 99).toFixed(0)} ms, max ${Math.max(...reach[f]).toFixed(0)} ms`,
    );
  }

  say(`▶ throughput: iperf3 TCP ${SECONDS} s, ${REPS} reps per path and family`);
  const baseline = await buildBaseline(baselinePrefix);
  baselineNames = baseline.names;
  const server = targets.find((t) => t.node === 'node-2');
  if (server === undefined) throw new Error('no pod on node-2');
  const best: Record<string, number> = {};
  const ratios: Record<Family, number[]> = { IPv4: [], IPv6: [] };
  for (let rep = 1; rep <= REPS; rep++) {
    for (const f of FAMILIES) {
      const dyadAddr = server.podIPs.find((ip) => ip.includes(':') === (f === 'IPv6')) ?? '';
      const d = await iperf(server.netns, src.netns, dyadAddr);
      const p = await iperf(baseline.b, baseline.a, baseline.addr[f]);
      best[`dyad_${f}`] = Math.max(best[`dyad_${f}`] ?? 0, d);
      best[`plain_${f}`] = Math.max(best[`plain_${f}`] ?? 0, p);
      ratios[f].push(d / p);
      say(
        `  rep ${rep} ${f}: Dyad ${(d / 1e9).toFixed(2)} Gbit/s, plain ${(p / 1e9).toFixed(2)} Gbit/s`,
      );
    }
  }
  kube.close();
  const ratio = (f: Family) =>
    Number(((best[`dyad_${f}`] ?? 0) / (best[`plain_${f}`] ?? 1)).toFixed(3));
  const r = (f: Family, p: number) => Math.round(percentile(reach[f], p));
  process.stdout.write(
    `${JSON.stringify({
      bench: 'lab',
      ...(opts.kubelet ? { mode: 'kubelet' } : {}),
      ...(installS === undefined ? {} : { install_s: Number(installS.toFixed(1)) }),
      reach_p50_ms_ipv4: r('IPv4', 50),
      reach_p99_ms_ipv4: r('IPv4', 99),
      reach_p50_ms_ipv6: r('IPv6', 50),
      reach_p99_ms_ipv6: r('IPv6', 99),
      tput_ratio_ipv4: ratio('IPv4'),
      tput_ratio_ipv6: ratio('IPv6'),
      pods: PODS,
      running_p50_ms: Math.round(percentile(running, 50)),
      tput_gbps_dyad_ipv4: Number(((best.dyad_IPv4 ?? 0) / 1e9).toFixed(2)),
      tput_gbps_plain_ipv4: Number(((best.plain_IPv4 ?? 0) / 1e9).toFixed(2)),
      tput_gbps_dyad_ipv6: Number(((best.dyad_IPv6 ?? 0) / 1e9).toFixed(2)),
      tput_gbps_plain_ipv6: Number(((best.plain_IPv6 ?? 0) / 1e9).toFixed(2)),
      ...split,
    })}\n`,
  );
} finally {
  await cleanup();
}
