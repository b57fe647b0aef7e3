// `npm run bench -- services`: what ClusterIP translation costs. In one run, with the same client
// pod, the same backend pod and the same request/response loop (64-byte requests over one TCP
// connection, bench/support/rr.ts), requests per second through a cluster IP divided by requests
// per second straight to the backend's pod IP, for each family; rounds alternate the two, and the
// medians are compared. Translation is per packet at the tc layer (bpf/lib/lb.h), so this ratio
// is its whole cost. The last stdout line is one JSON object.
//
// Also printed: lb_extra_ns_ipv4/6, what translation adds to dy_from_container per packet, from
// in-kernel test runs (not disturbed by the machine's load as the rps ratios are), and
// np_extra_ns_ipv4/6, what NodePort translation to a backend on another node (DNAT + SNAT,
// an established connection's packet) adds to dy_from_netdev the same way.
// update_p99_ms: on a fresh 3-node lab (.lab/bench-services), a Service without selector and an
// EndpointSlice the bench writes itself; 50 times the slice is replaced (one ready endpoint, then
// two, then one...) and the time from the apiserver's answer until node-1's pinned dy_lb_services
// entry for the cluster IP counts that many backends is taken (the whole path: kube-bridge,
// NATS, router, agent, reconciler, map). --no-lab skips it (null).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Family, parseIp, parseMac } from '@dyad/netaddr';
import { LbServiceFlags, Libbpf, maglevTable, openPinnedDatapath } from '@dyad/libbpf-ts';
import { KubeClient, labDown, labPaths, labUp, readState } from '@dyad/lab';
import { repoRoot } from '@dyad/testbed';
import { KernelFixture, ensureBpfBuilt, podAgentSpec, setupNode } from '@dyad/libbpf-ts/testing';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    ms: { type: 'string', default: '2000' },
    changes: { type: 'string', default: '50' },
    'no-lab': { type: 'boolean', default: false },
  },
});
const CHANGES = Number(args.changes);
const ROUNDS = Number(args.rounds);
const MS = Number(args.ms);
const RR = fileURLToPath(new URL('./support/rr.ts', import.meta.url));
const log = (msg: string): void => void process.stderr.write(`${msg}\n`);

/** A TCP ACK (an established connection's packet) from the pod, as its host veth receives it. */
function tcpPacket(o: {
  src: string;
  dst: string;
  dport: number;
  srcMac: string;
  dstMac: string;
}): Buffer {
  const s = parseIp(o.src);
  const d = parseIp(o.dst);
  const v4 = s.family === Family.IPv4;
  const eth = Buffer.concat([
    Buffer.from(parseMac(o.dstMac)),
    Buffer.from(parseMac(o.srcMac)),
    Buffer.from(v4 ? [0x08, 0x00] : [0x86, 0xdd]),
  ]);
  const tcp = Buffer.alloc(20);
  tcp.writeUInt16BE(40000, 0);
  tcp.writeUInt16BE(o.dport, 2);
  tcp[12] = 0x50;
  tcp[13] = 0x10; // ACK
  tcp.writeUInt16BE(0xffff, 14);
  let ip: Buffer;
  if (v4) {
    ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(40, 2);
    ip[8] = 64;
    ip[9] = 6;
    Buffer.from(s.bytes.subarray(0, 4)).copy(ip, 12);
    Buffer.from(d.bytes.subarray(0, 4)).copy(ip, 16);
  } else {
    ip = Buffer.alloc(40);
    ip[0] = 0x60;
    ip.writeUInt16BE(20, 4);
    ip[6] = 6;
    ip[7] = 64;
    Buffer.from(s.bytes).copy(ip, 8);
    Buffer.from(d.bytes).copy(ip, 24);
  }
  return Buffer.concat([eth, ip, tcp]);
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? 0;
}

/** EndpointSlice change → node-1's datapath serving it, in ms, over CHANGES changes. */
async function updateLatencies(): Promise<number[]> {
  const paths = labPaths(repoRoot(), join(repoRoot(), '.lab', 'bench-services'));
  const io = { stdout: process.stderr, stderr: process.stderr };
  try {
    log('▶ lab up (3 nodes, IPv4+IPv6)');
    if ((await labUp(['--nodes', '3'], io, paths)) !== 0) throw new Error('lab up failed');
    const state = readState(paths.state);
    const n1 = state?.nodes.find((n) => n.name === 'node-1');
    if (state?.apiserver === undefined || state.tls === undefined || n1 === undefined)
      throw new Error('no apiserver or node-1 in the lab state');
    const kube = new KubeClient(state.apiserver, state.tls);
    const NS = 'bench';
    await kube.call('POST', '/api/v1/namespaces', { metadata: { name: NS } });
    const svc = await kube.call<{ spec: { clusterIPs: string[] } }>(
      'POST',
      `/api/v1/namespaces/${NS}/services`,
      {
        metadata: { name: 'lb' },
        spec: { ports: [{ name: 'tcp', port: 80, protocol: 'TCP' }] },
      },
    );
    const vip = svc.spec.clusterIPs[0] ?? '';
    const slicePath = `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`;
    const slice = (n: number, resourceVersion?: string) => ({
      metadata: {
        name: 'lb-1',
        labels: { 'kubernetes.io/service-name': 'lb' },
        ...(resourceVersion ? { resourceVersion } : {}),
      },
      addressType: vip.includes(':') ? 'IPv6' : 'IPv4',
      ports: [{ name: 'tcp', port: 8080, protocol: 'TCP' }],
      endpoints: Array.from({ length: n }, (_, i) => ({
        addresses: [vip.includes(':') ? `fd00:77::${i + 1}` : `198.18.77.${i + 1}`],
        conditions: { ready: true },
      })),
    });
    let current = await kube.call<{ metadata: { resourceVersion: string } }>(
      'POST',
      slicePath,
      slice(1),
    );
    const maps = openPinnedDatapath(Libbpf.open(), n1.pinDir);
    const key = { address: vip, port: 80, protocol: 'TCP' as const };
    const served = () => maps.lbServices.lookup(key)?.backends;
    const wait = async (n: number, deadlineMs: number): Promise<void> => {
      const until = performance.now() + deadlineMs;
      while (served() !== n) {
        if (performance.now() > until) throw new Error(`node-1 never served ${n} backends`);
        await sleep(1);
      }
    };
    await wait(1, 60_000);
    const out: number[] = [];
    try {
      for (let i = 0; i < CHANGES; i++) {
        const n = i % 2 === 0 ? 2 : 1;
        current = await kube.call(
          'PUT',
          `${slicePath}/lb-1`,
          slice(n, current.metadata.resourceVersion),
        );
        const t0 = performance.now();
        await wait(n, 30_000);
        out.push(performance.now() - t0);
      }
    } finally {
      maps.close();
      kube.close();
    }
    return out;
  } finally {
    await labDown([], io, paths);
  }
}

if (process.getuid?.() !== 0) {
  log('services bench needs root (netns, eBPF, tc)');
  process.exit(2);
}
ensureBpfBuilt();
const lab = new KernelFixture();
try {
  const node = lab.addNode('n1');
  // an uplink for dy_from_netdev (the NodePort figures); nothing is sent over it
  const peer = lab.addNode('n2');
  const up = lab.link(node, '198.19.0.1', 'fd00:19::1', peer, '198.19.0.2', 'fd00:19::2');
  const a = lab.addPod(node, 'pa', '198.18.1.11', 'fd00:18:1::11');
  const b = lab.addPod(node, 'pb', '198.18.1.12', 'fd00:18:1::12');
  const pods = [
    { pod: a, endpointId: 1, identity: 3001 },
    { pod: b, endpointId: 2, identity: 3001 },
  ];
  await setupNode(lab, node, pods, {
    attach: [
      ...podAgentSpec(pods).attach,
      { ifindex: up.a.ifindex, program: 'fromNetdev', direction: 'ingress' },
    ],
  });
  const maps = openPinnedDatapath(Libbpf.open(), node.pinDir);
  const vip = { v4: '198.18.96.10', v6: 'fd00:96::10' } as const;
  let id = 1;
  for (const fam of ['v4', 'v6'] as const) {
    const backendId = id++;
    maps.lbBackends.update(backendId, { address: b[fam], port: 7000, flags: 0 });
    const svcId = id++;
    maps.lbMaglev.update(svcId, maglevTable([{ id: backendId, name: `${b[fam]}|7000` }]));
    maps.lbServices.update(
      { address: vip[fam], port: 80, protocol: 'TCP' },
      { id: svcId, backends: 1, affinityTimeoutS: 0, flags: 0 },
    );
  }
  maps.close();
  await lab.echoServer(b, [7000]);

  // Per-packet cost of the translation without the machine's noise in it: dy_from_container
  // run in the kernel by BPF_PROG_TEST_RUN (bpftool prog run, 100,000 repeats) on one
  // established connection's packet. Test runs reuse the packet, so the translated packet must
  // stay a Service's: two frontends translate to each other, and every run is one full
  // translation (frontend, flow and reverse entries, address, port and checksums). The
  // baseline is a packet to an address that is no frontend and takes the same path after it
  // (no endpoint, no route: handed to the stack).
  const ingressProg = (dev: string): number => {
    const netText = lab.nsExec(node.netns, ['bpftool', '-j', 'net', 'show', 'dev', dev]);
    const nets = JSON.parse(netText) as Array<{
      tc?: Array<{ kind?: string; id?: number; prog_id?: number }>;
    }>;
    const tc = nets[0]?.tc?.find((t) => t.kind?.endsWith('ingress') === true);
    const id = tc?.id ?? tc?.prog_id;
    if (id === undefined) throw new Error(`no tc ingress program on ${dev}: ${netText}`);
    return id;
  };
  const progId = ingressProg(a.hostIf);
  const netdevProgId = ingressProg(up.a.ifname);
  const pair = {
    v4: ['198.18.96.20', '198.18.96.21', '198.18.200.1'],
    v6: ['fd00:96::20', 'fd00:96::21', 'fd00:200::1'],
  } as const;
  // NodePort the same way: two node-address frontends whose backend (on no local pod, so
  // SNAT) is the other one. Each run's output is the next run's client tuple; the chain of
  // tuples closes into a cycle after a few thousand runs (of 500,000 per family), after which
  // every run is an established connection's packet (flow, SNAT and reply records found,
  // nothing allocated). Measured once: 11,868 dy_lb_snat records (two per allocation) after
  // both families, so over 99 % of the runs were established ones.
  const npPair = {
    v4: ['198.18.97.20', '198.18.97.21', '198.18.97.30', '198.18.50.1'],
    v6: ['fd00:97::20', 'fd00:97::21', 'fd00:97::30', 'fd00:50::1'],
  } as const;
  {
    const m = openPinnedDatapath(Libbpf.open(), node.pinDir);
    for (const fam of ['v4', 'v6'] as const) {
      const [x, y] = pair[fam];
      for (const [from, to] of [
        [x, y],
        [y, x],
      ] as const) {
        const backendId = id++;
        const svcId = id++;
        m.lbBackends.update(backendId, { address: to, port: 80, flags: 0 });
        m.lbMaglev.update(svcId, maglevTable([{ id: backendId, name: `${to}|80` }]));
        m.lbServices.update(
          { address: from, port: 80, protocol: 'TCP' },
          { id: svcId, backends: 1, affinityTimeoutS: 0, flags: 0 },
        );
      }
      const [nx, ny] = npPair[fam];
      for (const [from, to] of [
        [nx, ny],
        [ny, nx],
      ] as const) {
        const backendId = id++;
        const svcId = id++;
        m.lbBackends.update(backendId, { address: to, port: 80, flags: 0 });
        m.lbMaglev.update(svcId, maglevTable([{ id: backendId, name: `${to}|80` }]));
        m.lbServices.update(
          { address: from, port: 80, protocol: 'TCP' },
          { id: svcId, backends: 1, affinityTimeoutS: 0, flags: LbServiceFlags.NODEPORT },
        );
      }
    }
    m.close();
  }
  const tmp = mkdtempSync(join(tmpdir(), 'dyad-bench-lb-'));
  const ctxFor = (ifindex: number, name: string): string => {
    const ctx = Buffer.alloc(44);
    ctx.writeUInt32LE(ifindex, 36); // ingress_ifindex
    ctx.writeUInt32LE(ifindex, 40); // ifindex
    writeFileSync(join(tmp, name), ctx);
    return join(tmp, name);
  };
  const podCtx = ctxFor(a.hostIfindex, 'ctx');
  const upCtx = ctxFor(up.a.ifindex, 'ctx-up');
  const progNs = (dst: string, from?: string): number => {
    const f = join(tmp, dst);
    const src = from ?? (dst.includes(':') ? a.v6 : a.v4);
    writeFileSync(f, tcpPacket({ src, dst, dport: 80, srcMac: a.mac, dstMac: a.hostMac }));
    const id = from === undefined ? progId : netdevProgId;
    const runs: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = lab.nsExec(node.netns, [
        'bpftool',
        'prog',
        'run',
        'id',
        String(id),
        'data_in',
        f,
        'ctx_in',
        from === undefined ? podCtx : upCtx,
        'repeat',
        '100000',
      ]);
      const ns = /duration[^:]*: (\d+)ns/.exec(r)?.[1];
      if (ns === undefined) throw new Error(`bpftool prog run said: ${r}`);
      runs.push(Number(ns));
    }
    return median(runs);
  };
  const extra: Record<string, number> = {};
  try {
    for (const fam of ['v4', 'v6'] as const) {
      const [x, , none] = pair[fam];
      const base = progNs(none);
      const lb = progNs(x);
      log(
        `${fam}: dy_from_container ${base} ns/packet to a plain address, ${lb} ns/packet to a cluster IP (test runs, medians of 5 x 100,000)`,
      );
      extra[`lb_extra_ns_ip${fam}`] = lb - base;
      const [nx, , nnone, client] = npPair[fam];
      const npBase = progNs(nnone, client);
      const np = progNs(nx, client);
      log(
        `${fam}: dy_from_netdev ${npBase} ns/packet to a node address without NodePort, ${np} ns/packet to a NodePort with a remote backend (SNAT; test runs, medians of 5 x 100,000)`,
      );
      extra[`np_extra_ns_ip${fam}`] = np - npBase;
    }
    {
      // two records per allocation: far fewer than the 1,000,000 NodePort runs means the runs
      // went round a cycle of established connections
      const m = openPinnedDatapath(Libbpf.open(), node.pinDir);
      log(`dy_lb_snat holds ${m.lbSnat.lookupBatch().length} records after the NodePort runs`);
      m.close();
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }

  const rps = async (addr: string, port: number): Promise<number> => {
    const r = await lab.nodeScript(a.netns, RR, [addr, String(port), String(MS)], MS + 10_000);
    if (r.code !== 0) throw new Error(`rr to ${addr}:${port} failed: ${r.stderr}`);
    return Number(r.stdout.trim()) / (MS / 1000);
  };
  const out: Record<string, number> = {};
  // first connections resolve neighbours and warm the JIT: not measured
  for (const fam of ['v4', 'v6'] as const) {
    await rps(b[fam], 7000);
    await rps(vip[fam], 80);
  }
  for (const fam of ['v4', 'v6'] as const) {
    const direct: number[] = [];
    const viaVip: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      // alternate which goes first, so drift in the machine's load falls on both
      if (i % 2 === 0) {
        direct.push(await rps(b[fam], 7000));
        viaVip.push(await rps(vip[fam], 80));
      } else {
        viaVip.push(await rps(vip[fam], 80));
        direct.push(await rps(b[fam], 7000));
      }
    }
    log(
      `${fam}: direct ${median(direct).toFixed(0)} rps, cluster IP ${median(viaVip).toFixed(0)} rps (medians of ${ROUNDS})`,
    );
    out[`rps_ratio_ip${fam}`] = Math.round((median(viaVip) / median(direct)) * 1000) / 1000;
  }
  let update: number[] | undefined;
  if (!args['no-lab']) {
    update = await updateLatencies();
    log(
      `update: EndpointSlice change to node-1's datapath, p50 ${percentile(update, 50).toFixed(1)} ms, p99 ${percentile(update, 99).toFixed(1)} ms over ${update.length} changes`,
    );
  }
  process.stdout.write(
    `${JSON.stringify({
      bench: 'services',
      rps_ratio_ipv4: out['rps_ratio_ipv4'],
      rps_ratio_ipv6: out['rps_ratio_ipv6'],
      update_p99_ms: update === undefined ? null : Math.round(percentile(update, 99)),
      ...extra,
    })}\n`,
  );
} finally {
  lab.cleanup();
}
