// `npm run bench -- cni [--pods 100] [--ref-dual-pods 100] [--burst 100]`
// CNI ADD and DEL latency, exec to exit as a container runtime sees it, for --pods sequential
// dual-stack pods through dyad-cni (a real agent in its node netns, real ipam and nats-server),
// and in the same run Debian's reference plugins (/usr/lib/cni: ptp with host-local) doing the
// same, once IPv4-only and once dual-stack. Every plugin is exec'd the same way (nsenter into its
// node netns, so ptp's host side never touches the machine's own namespace). Then a burst: --burst
// pods created at once on one node, through dyad-cni dual-stack and through ptp + host-local
// IPv4-only; and the DEL floor: bare veth pairs carrying one address per family deleted through
// the agent's own netlink code. Needs root. Detail lines go to stderr; the last stdout line is the
// summary JSON.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  AgentHarness,
  CNI_BIN_DIR,
  DATAPATH_OBJECT,
  ensureBpfBuilt,
  ensureCniBuilt,
  run,
} from '@dyad/datapath-agent/testing';
import {
  Netns,
  createVeth,
  deleteLink,
  linkByName,
  openLibc,
  podSideRequests,
  setLinkUp,
} from '@dyad/datapath-agent';

const { values: opts } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== 'cni'),
  options: {
    pods: { type: 'string', default: '100' },
    'ref-dual-pods': { type: 'string', default: '100' },
    burst: { type: 'string', default: '100' },
  },
});
const PODS = Number(opts.pods);
const REF_DUAL_PODS = Number(opts['ref-dual-pods']);
const BURST = Number(opts.burst);
const REF_CNI_PATH = '/usr/lib/cni';

if (process.getuid?.() !== 0) {
  console.error('bench cni needs root (network namespaces, veths, bpf)');
  process.exit(2);
}

const log = (s: string) => process.stderr.write(`${s}\n`);

function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? NaN;
}
const ms = (x: number) => Number(x.toFixed(2));

/** Execs a CNI plugin inside `netns` as a runtime would; wall time from exec to exit. */
function execPlugin(
  netns: string,
  plugin: string,
  env: Record<string, string>,
  stdin: string,
): { ms: number; code: number; stdout: string } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('nsenter', [`--net=/run/netns/${netns}`, plugin], {
    env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env },
    input: stdin,
    encoding: 'utf8',
  });
  const t = Number(process.hrtime.bigint() - t0) / 1e6;
  return { ms: t, code: r.status ?? -1, stdout: r.stdout };
}

/** The same, without waiting: resolves with the exit code when the plugin exits. */
function execPluginAsync(
  netns: string,
  plugin: string,
  env: Record<string, string>,
  stdin: string,
): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn('nsenter', [`--net=/run/netns/${netns}`, plugin], {
      env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env },
    });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.once('close', (code) => resolve({ code: code ?? -1, stdout }));
    child.stdin.end(stdin);
  });
}

/** A CNI plugin as a runtime calls it on one node. */
interface Plugin {
  readonly nodeNetns: string;
  readonly binary: string;
  readonly cniPath: string;
  readonly conf: string;
  /** CNI_ARGS of pod i. */
  readonly args: (i: number) => string;
}

/** `count` pod netns named `<label><i>`, and the CNI environment of each call for pod i. */
function podSet(lab: AgentHarness, label: string, count: number, plugin: Plugin) {
  const pods = Array.from({ length: count }, (_, i) => lab.addPodNetns(`${label}${i}`));
  const env = (cmd: string, i: number) => ({
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: `${label}${i}`,
    CNI_NETNS: pods[i] ?? '',
    CNI_IFNAME: 'eth0',
    CNI_PATH: plugin.cniPath,
    CNI_ARGS: plugin.args(i),
  });
  const remove = () => {
    for (const p of pods) run('ip', ['netns', 'del', p.replace('/run/netns/', '')]);
  };
  return { pods, env, remove };
}

/** `count` pods created at once (every ADD started together); pods per second, then DELs. */
async function burst(lab: AgentHarness, label: string, count: number, p: Plugin): Promise<number> {
  const { pods, env, remove } = podSet(lab, label, count, p);
  const t0 = process.hrtime.bigint();
  const adds = await Promise.all(
    pods.map((_, i) => execPluginAsync(p.nodeNetns, p.binary, env('ADD', i), p.conf)),
  );
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const failed = adds.findIndex((r) => r.code !== 0);
  if (failed >= 0) throw new Error(`${label} burst ADD ${failed} failed: ${adds[failed]?.stdout}`);
  for (let i = 0; i < count; i++) execPlugin(p.nodeNetns, p.binary, env('DEL', i), p.conf);
  remove();
  const rate = count / seconds;
  log(
    `${label} burst: ${count} pods at once in ${ms(seconds * 1000)} ms, ${rate.toFixed(1)} pods/s`,
  );
  return rate;
}

/**
 * The kernel's part of a DEL: `count` veth pairs, up on both ends, with one address per family
 * on the pod side, made with the agent's own netlink code from inside the node netns (forwarding
 * on, as on every node that routes pods), then deleted one after
 * another (the host end, which takes the peer along), as the series delete their pods: all made
 * first, so the kernel tears each down beside as many others as a DEL of the series does. Exec and
 * the agent's bookkeeping are what a DEL adds on top.
 */
function delFloor(lab: AgentHarness, nodeNetns: string, count: number): number[] {
  const libc = openLibc();
  const netns = new Netns(libc, (err) => {
    throw err;
  });
  const node = netns.open(`/run/netns/${nodeNetns}`);
  if (!('fd' in node)) throw new Error(`cannot open ${nodeNetns}`);
  const host = netns.socketIn(node.fd);
  const out: number[] = [];
  const pods: string[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const podPath = lab.addPodNetns(`fl${i}`);
      pods.push(podPath);
      const pod = netns.open(podPath);
      if (!('fd' in pod)) throw new Error(`cannot open ${podPath}`);
      const podSock = netns.socketIn(pod.fd);
      try {
        createVeth(host, {
          name: `dyfl${i}`,
          mac: '0e:00:00:00:00:01',
          mtu: 1500,
          peer: { name: 'eth0', mac: '0a:00:00:00:00:01', netnsFd: pod.fd },
        });
        const podLink = linkByName(podSock, 'eth0');
        const hostLink = linkByName(host, `dyfl${i}`);
        if (!podLink || !hostLink) throw new Error('floor veth lacks an end');
        // up on both ends, as a pod's pair is: an interface that is up has IPv6 state to tear down
        setLinkUp(host, hostLink.index, `floor veth ${i} up`);
        podSock.apply(
          podSideRequests({
            podIfindex: podLink.index,
            hostMac: '0e:00:00:00:00:01',
            ipv4: { address: `198.19.250.${10 + (i % 200)}`, gateway: '198.19.250.1' },
            ipv6: { address: `fd00:f100::${(10 + i).toString(16)}`, gateway: 'fd00:f100::1' },
          }),
        );
      } finally {
        podSock.close();
        netns.close(pod.fd);
      }
    }
    for (let i = 0; i < count; i++) {
      const t0 = process.hrtime.bigint();
      deleteLink(host, `dyfl${i}`);
      out.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  } finally {
    host.close();
    netns.close(node.fd);
    for (const p of pods) run('ip', ['netns', 'del', p.replace('/run/netns/', '')]);
  }
  log(
    `DEL floor (${count} bare dual-stack veth pairs, agent netlink code, forwarding on): p50 ${ms(quantile(out, 0.5))} ms`,
  );
  return out;
}

interface Series {
  add: number[];
  del: number[];
}

/** ADD every pod one after another, then DEL them one after another. */
function cycle(lab: AgentHarness, label: string, count: number, p: Plugin): Series {
  const out: Series = { add: [], del: [] };
  const { env, remove } = podSet(lab, label, count, p);
  for (let i = 0; i < count; i++) {
    const r = execPlugin(p.nodeNetns, p.binary, env('ADD', i), p.conf);
    if (r.code !== 0) throw new Error(`${label} ADD ${i} failed (${r.code}): ${r.stdout}`);
    out.add.push(r.ms);
  }
  for (let i = 0; i < count; i++) {
    const r = execPlugin(p.nodeNetns, p.binary, env('DEL', i), p.conf);
    if (r.code !== 0) throw new Error(`${label} DEL ${i} failed (${r.code}): ${r.stdout}`);
    out.del.push(r.ms);
  }
  remove();
  log(
    `${label}: ${count} pods, ADD p50 ${ms(quantile(out.add, 0.5))} ms p99 ${ms(quantile(out.add, 0.99))} ms, DEL p50 ${ms(quantile(out.del, 0.5))} ms`,
  );
  return out;
}

ensureBpfBuilt();
ensureCniBuilt();
const lab = new AgentHarness();
try {
  // where the time of a CNI call can go, measured before anything else runs
  const nodeStart: number[] = [];
  for (let i = 0; i < 10; i++) {
    const t0 = process.hrtime.bigint();
    spawnSync(process.execPath, ['-e', '0']);
    nodeStart.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  log(`node ${process.version} start-up (node -e 0): p50 ${ms(quantile(nodeStart, 0.5))} ms`);

  await lab.start();
  await lab.addNode('dyad');
  const agent = await lab.startAgent('dyad', undefined, {
    LOG_LEVEL: process.env['DYAD_BENCH_AGENT_LOG'] ?? 'warn',
    DYAD_BPF_OBJECT: DATAPATH_OBJECT,
  });
  const dyadConf = JSON.stringify({
    cniVersion: '1.1.0',
    name: agent.network,
    type: 'dyad-cni',
    agentSocket: agent.cniSocket,
    mtu: 1500,
  });
  const dyadCni = join(CNI_BIN_DIR, 'dyad-cni');

  const version: number[] = [];
  for (let i = 0; i < 50; i++)
    version.push(
      execPlugin(agent.netns, dyadCni, { CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.1.0"}').ms,
    );
  log(
    `dyad-cni VERSION through the agent (exec + socket + agent): p50 ${ms(quantile(version, 0.5))} ms`,
  );
  const nsenterOnly: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t0 = process.hrtime.bigint();
    spawnSync('nsenter', [`--net=/run/netns/${agent.netns}`, '/bin/true']);
    nsenterOnly.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  log(`exec overhead (nsenter + /bin/true): p50 ${ms(quantile(nsenterOnly, 0.5))} ms`);

  const podArgs = (name: string) => (i: number) =>
    `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${name}-${i};K8S_POD_UID=uid-${name}-${i}`;
  const dyadPlugin = (args: (i: number) => string): Plugin => ({
    nodeNetns: agent.netns,
    binary: dyadCni,
    cniPath: CNI_BIN_DIR,
    conf: dyadConf,
    args,
  });
  const dyad = cycle(lab, 'dy', PODS, dyadPlugin(podArgs('bench')));
  const status = await lab.status(agent);
  log(`agent after the run: ${JSON.stringify(status['writes'])}`);

  // the reference plugins, on a node netns of their own
  const refNode = await lab.addNode('ref');
  const dataDir = join(lab.dir, 'host-local');
  mkdirSync(dataDir, { recursive: true });
  const refConf = (dual: boolean) =>
    JSON.stringify({
      cniVersion: '1.0.0',
      name: `${lab.prefix}-ref`,
      type: 'ptp',
      ipMasq: false,
      mtu: 1500,
      ipam: {
        type: 'host-local',
        dataDir,
        ranges: dual
          ? [[{ subnet: '198.19.128.0/20' }], [{ subnet: 'fd00:ee::/64' }]]
          : [[{ subnet: '198.19.128.0/20' }]],
        routes: dual ? [{ dst: '0.0.0.0/0' }, { dst: '::/0' }] : [{ dst: '0.0.0.0/0' }],
      },
    });
  const ptp = join(REF_CNI_PATH, 'ptp');
  const ref = (dual: boolean): Plugin => ({
    nodeNetns: refNode,
    binary: ptp,
    cniPath: REF_CNI_PATH,
    conf: refConf(dual),
    args: () => '',
  });
  const refV4 = cycle(lab, 'r4', PODS, ref(false));
  const refDual = cycle(lab, 'r6', REF_DUAL_PODS, ref(true));
  const dyadBurst = await burst(lab, 'db', BURST, dyadPlugin(podArgs('burst')));
  const refBurst = await burst(lab, 'rb', BURST, ref(false));
  rmSync(dataDir, { recursive: true, force: true });
  // forwarding on in the floor's node, as on every node that routes pods (the agent turns it on,
  // ptp too): with IPv6 forwarding the kernel's teardown of an interface costs about twice as much
  const floorNode = await lab.addNode('floor');
  run('ip', ['netns', 'exec', floorNode, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  run('ip', ['netns', 'exec', floorNode, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
  const floor = delFloor(lab, floorNode, PODS);

  const add50 = quantile(dyad.add, 0.5);
  const ref4 = quantile(refV4.add, 0.5);
  process.stdout.write(
    `${JSON.stringify({
      bench: 'cni',
      add_p50_ms: ms(add50),
      add_p99_ms: ms(quantile(dyad.add, 0.99)),
      del_p50_ms: ms(quantile(dyad.del, 0.5)),
      ref_v4_add_p50_ms: ms(ref4),
      ref_dual_add_p50_ms: ms(quantile(refDual.add, 0.5)),
      ref_del_p50_ms: ms(quantile(refDual.del, 0.5)),
      add_p50_ratio: Number((add50 / ref4).toFixed(3)),
      burst_pods_per_s: Number(dyadBurst.toFixed(1)),
      ref_burst_pods_per_s: Number(refBurst.toFixed(1)),
      burst_ratio: Number((dyadBurst / refBurst).toFixed(3)),
      del_floor_p50_ms: ms(quantile(floor, 0.5)),
      del_floor_ratio: Number((quantile(dyad.del, 0.5) / quantile(floor, 0.5)).toFixed(3)),
    })}\n`,
  );
} finally {
  await lab.cleanup();
}
