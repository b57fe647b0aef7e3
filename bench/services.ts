// `npm run bench -- services`: what ClusterIP translation costs. In one run, with the same client
// pod, the same backend pod and the same request/response loop (64-byte requests over one TCP
// connection, bench/support/rr.ts), requests per second through a cluster IP divided by requests
// per second straight to the backend's pod IP, for each family; rounds alternate the two, and the
// medians are compared. Translation is per packet at the tc layer (bpf/lib/lb.h), so this ratio
// is its whole cost. The last stdout line is one JSON object.
//
// update_p99_ms (an EndpointSlice change until the datapath uses it) needs the lab's apiserver,
// controller manager, kube-bridge, router and agents: null until that part is written.
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Libbpf, maglevTable, openPinnedDatapath } from '@dyad/libbpf-ts';
import { ensureBpfBuilt } from '../packages/libbpf-ts/test/helpers/build.ts';
import { KernelFixture } from '../packages/libbpf-ts/test/helpers/kernel-fixture.ts';
import { setupNode } from '../packages/libbpf-ts/test/helpers/topology.ts';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    ms: { type: 'string', default: '2000' },
  },
});
const ROUNDS = Number(args.rounds);
const MS = Number(args.ms);
const RR = fileURLToPath(new URL('./support/rr.ts', import.meta.url));
const log = (msg: string): void => void process.stderr.write(`${msg}\n`);

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

if (process.getuid?.() !== 0) {
  log('services bench needs root (netns, eBPF, tc)');
  process.exit(2);
}
ensureBpfBuilt();
const lab = new KernelFixture();
try {
  const node = lab.addNode('n1');
  const a = lab.addPod(node, 'pa', '198.18.1.11', 'fd00:18:1::11');
  const b = lab.addPod(node, 'pb', '198.18.1.12', 'fd00:18:1::12');
  await setupNode(lab, node, [
    { pod: a, endpointId: 1, identity: 3001 },
    { pod: b, endpointId: 2, identity: 3001 },
  ]);
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
  process.stdout.write(
    `${JSON.stringify({
      bench: 'services',
      rps_ratio_ipv4: out['rps_ratio_ipv4'],
      rps_ratio_ipv6: out['rps_ratio_ipv6'],
      update_p99_ms: null,
    })}\n`,
  );
} finally {
  lab.cleanup();
}
