// `npm run bench -- policy`: the policy compiler's incremental recompute against a recompute from
// scratch, for one label change in a cluster of 1,000 pods and 200 NetworkPolicies, in one run.
// Then, on a lab (root only; `--changes 0` skips it), the propagation of --changes NetworkPolicy
// creates to every node (support/policy-propagation.ts). The last stdout line is one JSON object.
//
// The cluster: 20 namespaces of 50 pods (10 apps × 5 replicas, labels app/tier/version), pods
// spread over 10 nodes, both families. Per namespace 10 policies: a default deny of ingress, 7
// allow-lists between apps (by number, by named port, by range), one allowing the monitoring
// namespace to scrape every pod (in even namespaces one allow-list is instead an allow of the whole
// namespace), one egress policy for the back tier (DNS to kube-system, an
// ipBlock with excepts in each family). The change: one pod's `version` label, as a rollout does;
// it gets a new identity, which every allow-list naming its app must add.
import { parseArgs } from 'node:util';
import { measurePropagation } from './support/policy-propagation.ts';
import { NetworkPolicy } from '@dyad/contracts';
import type { z } from 'zod';
import {
  PolicyEngine,
  identityLabels,
  labelSetKey,
  namespaceLabels,
  normalizePolicy,
  readPrefix,
} from '@dyad/policy';
import type { PodInput, PolicySpec, Prefix } from '@dyad/policy';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '31' },
    changes: { type: 'string', default: '50' },
  },
  args: process.argv.slice(2).filter((a) => a !== 'policy'),
});
const ROUNDS = Number(args.rounds);
const CHANGES = Number(args.changes);
const NAMESPACES = 20;
const APPS = 10;
const REPLICAS = 5;
const NODES = 10;

const log = (msg: string): void => void process.stderr.write(`${msg}\n`);

class Identities {
  readonly #ids = new Map<string, number>();
  #next = 0x10000;
  of(ns: string, labels: Record<string, string>, nsLabels: Record<string, string>): number {
    const key = labelSetKey(identityLabels(ns, labels, nsLabels));
    let id = this.#ids.get(key);
    if (id === undefined) this.#ids.set(key, (id = this.#next++));
    return id;
  }
}

function prefix(text: string): Prefix {
  const p = readPrefix(text);
  if (p === undefined) throw new Error(`bad address ${text}`);
  return p;
}

const nsName = (n: number) => `team-${n}`;

function makePod(ids: Identities, n: number, app: number, r: number, version: string): PodInput {
  const ns = nsName(n);
  const nsLabels = namespaceLabels(ns, { team: String(n % 4), env: n % 2 === 0 ? 'prod' : 'dev' });
  const labels = { app: `app-${app}`, tier: app < 5 ? 'front' : 'back', version };
  const i = (n * APPS + app) * REPLICAS + r;
  return {
    namespace: ns,
    name: `app-${app}-${r}`,
    uid: `uid-${ns}-${app}-${r}`,
    node: `node-${i % NODES}`,
    identity: ids.of(ns, labels, nsLabels),
    labels,
    nsLabels,
    ports: [
      { name: 'http', port: 8080, protocol: 'TCP' },
      { name: 'metrics', port: 9090, protocol: 'TCP' },
      { name: 'grpc', port: 9000 + app, protocol: 'TCP' },
    ],
    ips: [
      prefix(`198.18.${Math.floor(i / 250)}.${(i % 250) + 1}`),
      prefix(`fd00:18:${Math.floor(i / 250)}::${(i % 250) + 1}`),
    ],
  };
}

function policy(ns: string, name: string, spec: z.input<typeof NetworkPolicy>['spec']): PolicySpec {
  return normalizePolicy(
    NetworkPolicy.parse({
      metadata: { uid: `uid-${ns}-${name}`, name, namespace: ns, resourceVersion: '1', labels: {} },
      spec,
    }),
  );
}

function policiesOf(n: number): PolicySpec[] {
  const ns = nsName(n);
  const app = (k: number) => ({ matchLabels: { app: `app-${k}` } });
  const out = [policy(ns, 'default-deny', { podSelector: {}, policyTypes: ['Ingress'] })];
  const ports = [
    [{ port: 8080 }],
    [{ port: 'http' }],
    [{ port: 9000, endPort: 9010 }],
    [{ port: 'grpc' }, { port: 8080 }],
  ];
  // Half the namespaces let all their pods talk to each other, a common pattern: a new identity
  // there changes the message of every pod of the namespace.
  const lists = n % 2 === 0 ? 6 : 7;
  if (n % 2 === 0) {
    out.push(
      policy(ns, 'allow-same-namespace', {
        podSelector: {},
        ingress: [{ from: [{ podSelector: {} }] }],
      }),
    );
  }
  for (let k = 1; k <= lists; k++) {
    out.push(
      policy(ns, `allow-app-${k}`, {
        podSelector: app(k),
        ingress: [
          { from: [{ podSelector: app(k - 1) }, { podSelector: app(k + 2) }], ports: ports[k % 4] },
        ],
      }),
    );
  }
  out.push(
    policy(ns, 'allow-monitoring', {
      podSelector: {},
      ingress: [
        {
          from: [
            { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } },
          ],
          ports: [{ port: 'metrics' }],
        },
      ],
    }),
  );
  out.push(
    policy(ns, 'back-egress', {
      podSelector: { matchLabels: { tier: 'back' } },
      policyTypes: ['Egress'],
      egress: [
        {
          to: [
            {
              namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
            },
          ],
          ports: [{ protocol: 'UDP', port: 53 }],
        },
        {
          to: [
            { ipBlock: { cidr: '198.18.0.0/15', except: [`198.18.${n}.0/24`] } },
            { ipBlock: { cidr: 'fd00:18::/32', except: [`fd00:18:${n}::/48`] } },
          ],
          ports: [{ port: 443 }],
        },
      ],
    }),
  );
  return out;
}

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

function buildEngine(pods: Iterable<PodInput>, policies: readonly PolicySpec[]): PolicyEngine {
  const e = new PolicyEngine({ allowHost: true });
  for (const p of policies) e.upsertPolicy(p);
  for (const p of pods) e.upsertPod(p);
  return e;
}

async function main(): Promise<void> {
  const ids = new Identities();
  const pods = new Map<string, PodInput>();
  for (let n = 0; n < NAMESPACES; n++) {
    for (let a = 0; a < APPS; a++) {
      for (let r = 0; r < REPLICAS; r++) {
        const p = makePod(ids, n, a, r, 'v1');
        pods.set(`${p.namespace}/${p.name}`, p);
      }
    }
  }
  const policies = Array.from({ length: NAMESPACES }, (_, n) => policiesOf(n)).flat();
  log(`bench policy: ${pods.size} pods, ${policies.length} policies, ${ROUNDS} rounds`);

  const engine = buildEngine(pods.values(), policies);
  const initial = engine.drain();
  log(`initial compile: ${initial.length} pod messages`);

  // The pod whose label changes: app-1 in team-8, replica 0 (app-2's allow-list names it, and
  // team-8 allows its whole namespace: every pod of it changes).
  const target = makePod(ids, 8, 1, 0, 'v1');
  const key = `${target.namespace}/${target.name}`;
  const incremental: number[] = [];
  const full: number[] = [];
  let changed = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const version = round % 2 === 0 ? 'v2' : 'v1';
    const next = makePod(ids, 8, 1, 0, version);
    pods.set(key, next);

    let t = performance.now();
    engine.upsertPod(next);
    const deltas = engine.drain();
    incremental.push(performance.now() - t);
    changed = deltas.length;

    t = performance.now();
    const scratch = buildEngine(pods.values(), policies);
    scratch.drain();
    full.push(performance.now() - t);

    if (round === 0) {
      // Both ways must agree, or the comparison means nothing.
      const a = JSON.stringify([...engine.published()].sort());
      const b = JSON.stringify([...scratch.published()].sort());
      if (a !== b) throw new Error('incremental and from-scratch results differ');
      log(`one label change: ${changed} pod messages change (of ${pods.size})`);
    }
  }
  // The first rounds warm the JIT; the medians are of the rest.
  const warm = Math.min(5, Math.floor(ROUNDS / 3));
  const incMs = median(incremental.slice(warm));
  const fullMs = median(full.slice(warm));
  log(`incremental: median ${incMs.toFixed(2)} ms; from scratch: median ${fullMs.toFixed(2)} ms`);
  let propagation: number[] = [];
  if (CHANGES > 0 && process.getuid?.() === 0) {
    propagation = await measurePropagation(CHANGES);
    log(
      `propagation over ${propagation.length} creates: p50 ${percentile(propagation, 50).toFixed(0)} ms, p99 ${percentile(propagation, 99).toFixed(0)} ms, max ${Math.max(...propagation).toFixed(0)} ms`,
    );
  } else {
    log('propagation: skipped (needs root and --changes > 0); its keys are null');
  }
  const round2 = (x: number) => Math.round(x * 100) / 100;
  console.log(
    JSON.stringify({
      bench: 'policy',
      pods: pods.size,
      policies: policies.length,
      changed_messages: changed,
      incremental_ms: round2(incMs),
      full_ms: round2(fullMs),
      incremental_speedup: round2(fullMs / incMs),
      propagation_p50_ms: propagation.length > 0 ? Math.round(percentile(propagation, 50)) : null,
      propagation_p99_ms: propagation.length > 0 ? Math.round(percentile(propagation, 99)) : null,
    }),
  );
}

await main();
