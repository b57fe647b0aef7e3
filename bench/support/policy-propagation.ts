// The propagation half of `npm run bench -- policy`: on a fresh 3-node dual-stack lab (in
// .lab/bench-policy), the time from a NetworkPolicy create call to the apiserver until every node
// enforces it, measured by probing. Targets on all three nodes sit behind a default deny of
// ingress; each change creates a policy admitting the clients, and is enforced once every client
// connects to the target on the next node in both families (a connect answers at once, so the
// polling resolves to a few ms; a block would only show as a timeout). Then the policy is deleted
// and the targets closed again before the next change (not measured). Needs root.
import { FAMILIES } from '@dyad/netaddr';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '@dyad/testbed';
import { Prober, labDown, labPaths, labUp } from '@dyad/lab';
import { createNamespace, labKube, waitPodRecord } from './lab-session.ts';

const NS = 'bench';
const PORT = 8080;
const NODES = ['node-1', 'node-2', 'node-3'] as const;
const POLICIES = `/apis/networking.k8s.io/v1/namespaces/${NS}/networkpolicies`;

const say = (s: string): boolean => process.stderr.write(`${s}\n`);

function pod(name: string, node: string, role: string) {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS, labels: { role } },
    spec: {
      nodeName: node,
      containers: [{ name: 'main', image: 'none', ports: [{ name: 'echo', containerPort: PORT }] }],
    },
  };
}

function netpol(name: string, spec: object) {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name, namespace: NS },
    spec,
  };
}

const targets = { matchLabels: { role: 'target' } };

const waitRecord = (podsDir: string, name: string) =>
  waitPodRecord(podsDir, NS, name, { families: FAMILIES.length, timeoutMs: 60_000, pollMs: 20 });

interface Pair {
  readonly from: string;
  readonly address: string;
}

/** Probes every pair once (each a fresh connection); how many connected. */
async function connected(
  prober: Prober,
  pairs: readonly Pair[],
  timeoutMs: number,
): Promise<number> {
  const r = await Promise.all(
    pairs.map((p) => prober.probeAddress(p.from, p.address, PORT, 'TCP', timeoutMs)),
  );
  return r.filter((x) => x.result === 'connected').length;
}

async function until(
  what: string,
  cond: () => Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what}: not after ${timeoutMs} ms`);
  }
}

/** Milliseconds from each of `changes` policy creates until every node enforces it. */
export async function measurePropagation(changes: number): Promise<number[]> {
  const dir = join(repoRoot(), '.lab', 'bench-policy');
  mkdirSync(dir, { recursive: true });
  const paths = labPaths(repoRoot(), dir);
  const io = { stdout: process.stderr, stderr: process.stderr };
  try {
    say('▶ propagation: lab up (3 nodes, IPv4+IPv6)');
    if ((await labUp(['--nodes', '3'], io, paths)) !== 0) throw new Error('lab up failed');
    const kube = labKube(paths);
    await createNamespace(kube, NS);
    for (const [i, node] of NODES.entries()) {
      await kube.call('POST', `/api/v1/namespaces/${NS}/pods`, pod(`t${i + 1}`, node, 'target'));
      await kube.call('POST', `/api/v1/namespaces/${NS}/pods`, pod(`c${i + 1}`, node, 'client'));
    }
    const t = await Promise.all(NODES.map((_, i) => waitRecord(paths.pods, `t${i + 1}`)));
    await Promise.all(NODES.map((_, i) => waitRecord(paths.pods, `c${i + 1}`)));
    // client i probes the target on the next node, in each family
    const pairs: Pair[] = NODES.flatMap((_, i) =>
      FAMILIES.map((f) => ({
        from: `${NS}/c${i + 1}`,
        address:
          t[(i + 1) % NODES.length]?.podIPs.find((ip) => ip.includes(':') === (f === 'IPv6')) ?? '',
      })),
    );
    const prober = new Prober({ podsDir: paths.pods });
    try {
      await until(
        'every pair connects before any policy',
        async () => (await connected(prober, pairs, 200)) === pairs.length,
        60_000,
      );
      await kube.call(
        'POST',
        POLICIES,
        netpol('deny', { podSelector: targets, policyTypes: ['Ingress'] }),
      );
      await until(
        'the default deny holds on every node',
        async () => (await connected(prober, pairs, 100)) === 0,
      );
      const out: number[] = [];
      for (let i = 0; i < changes; i++) {
        const name = `allow-${i}`;
        const t0 = performance.now();
        await kube.call(
          'POST',
          POLICIES,
          netpol(name, {
            podSelector: targets,
            ingress: [{ from: [{ podSelector: { matchLabels: { role: 'client' } } }] }],
          }),
        );
        await until(
          `${name} enforced`,
          async () => (await connected(prober, pairs, 50)) === pairs.length,
        );
        out.push(performance.now() - t0);
        await kube.call('DELETE', `${POLICIES}/${name}`);
        await until(`${name} removed`, async () => (await connected(prober, pairs, 50)) === 0);
        if (i % 10 === 9) say(`  ${i + 1} changes: last ${out.at(-1)?.toFixed(0)} ms`);
      }
      return out;
    } finally {
      prober.close();
      kube.close();
    }
  } finally {
    await labDown([], { stdout: process.stderr, stderr: process.stderr }, paths);
  }
}
