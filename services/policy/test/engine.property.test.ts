// The incremental engine against the from-scratch compiler, over random sequences of pod,
// namespace and policy events (as the router's core is tested). Small pools make things collide
// on purpose: pods that share labels (one identity), addresses inside and outside ipBlocks and
// their excepts, named ports that some pods number differently, policies replaced in place.
import { NetworkPolicy } from '@dyad/contracts';
import type { LabelSelectorObject } from '@dyad/contracts';
import { prng } from '@dyad/testbed';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { compileAll } from '../src/compile.ts';
import { PolicyEngine } from '../src/engine.ts';
import type { CompiledPod, PodInput, PodPolicyBody } from '../src/model.ts';
import { podKey } from '../src/model.ts';
import type { ContainerPortInput } from '../src/ports.ts';
import { normalizePolicy } from '../src/spec.ts';
import type { PolicySpec } from '../src/spec.ts';
import { IdentityTable, makePod } from './world.ts';

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
const maybe = (r: Rand, p = 0.5): boolean => r() < p;
const some = <T>(r: Rand, xs: readonly T[], p = 0.4): T[] => xs.filter(() => maybe(r, p));

const NAMESPACES = ['x', 'y', 'z'];
const POD_NAMES = ['p0', 'p1', 'p2', 'p3', 'p4', 'p5'];
const POLICY_NAMES = ['q0', 'q1', 'q2', 'q3'];
const NODES = ['n0', 'n1', undefined];
const LABELS: Record<string, readonly string[]> = {
  app: ['web', 'db'],
  tier: ['front', 'back'],
  role: ['x'],
};
const NS_LABELS: Record<string, readonly string[]> = { team: ['a', 'b'], env: ['prod'] };
const CONTAINER_PORTS: readonly ContainerPortInput[] = [
  { name: 'http', port: 80, protocol: 'TCP' },
  { name: 'http', port: 8080, protocol: 'TCP' },
  { name: 'dns', port: 53, protocol: 'UDP' },
  { name: 'metrics', port: 9090, protocol: 'TCP' },
  { port: 443, protocol: 'TCP' },
];
const POD_V4 = ['198.18.1.5', '198.18.1.6', '198.18.2.9', '198.19.0.1'];
const POD_V6 = ['fd00:18:1::5', 'fd00:18:2::9', 'fd00:19::1'];
const BLOCKS: ReadonlyArray<{ cidr: string; except: readonly string[] }> = [
  { cidr: '198.18.0.0/15', except: ['198.18.1.0/25', '198.18.2.9/32'] },
  { cidr: '198.18.1.0/24', except: ['198.18.1.5/32'] },
  { cidr: '198.18.1.0/25', except: [] },
  { cidr: '198.18.1.5/32', except: [] },
  { cidr: 'fd00:18::/32', except: ['fd00:18:1::/48'] },
  { cidr: 'fd00:18:1::/48', except: ['fd00:18:1::5/128'] },
  { cidr: 'fd00::/8', except: [] },
];

function randomLabels(r: Rand, pool: Record<string, readonly string[]>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, vs] of Object.entries(pool)) if (maybe(r)) out[k] = pick(r, vs);
  return out;
}

function randomSelector(r: Rand, pool: Record<string, readonly string[]>): LabelSelectorObject {
  const keys = Object.keys(pool);
  const matchLabels: Record<string, string> = {};
  if (maybe(r, 0.4)) {
    const k = pick(r, keys);
    matchLabels[k] = pick(r, pool[k] as readonly string[]);
  }
  const matchExpressions = Array.from({ length: maybe(r, 0.5) ? 1 : 0 }, () => {
    const key = pick(r, keys);
    const operator = pick(r, ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const);
    const values =
      operator === 'In' || operator === 'NotIn' ? some(r, pool[key] as readonly string[], 0.6) : [];
    return {
      key,
      operator,
      values:
        values.length === 0 && (operator === 'In' || operator === 'NotIn')
          ? [pick(r, pool[key] as readonly string[])]
          : values,
    };
  });
  return { matchLabels, matchExpressions };
}

type NpInput = z.input<typeof NetworkPolicy>;
type RuleInput = NonNullable<NpInput['spec']['ingress']>[number];

function randomRule(r: Rand): RuleInput {
  const ports = Array.from({ length: Math.floor(r() * 3) }, () => {
    const x = r();
    if (x < 0.3)
      return { protocol: pick(r, ['TCP', 'UDP'] as const), port: pick(r, [53, 80, 443, 8080]) };
    if (x < 0.5) return { port: 80, endPort: pick(r, [81, 443, 9090]) };
    if (x < 0.8)
      return {
        protocol: pick(r, ['TCP', 'UDP'] as const),
        port: pick(r, ['http', 'dns', 'metrics']),
      };
    return { protocol: pick(r, ['TCP', 'UDP'] as const) };
  });
  const peers = Array.from({ length: Math.floor(r() * 3) }, () => {
    const x = r();
    if (x < 0.3) return { ipBlock: { ...pick(r, BLOCKS), except: [...pick(r, BLOCKS).except] } };
    if (x < 0.5) return { podSelector: randomSelector(r, LABELS) };
    if (x < 0.7) return { namespaceSelector: randomSelector(r, NS_LABELS) };
    return {
      podSelector: randomSelector(r, LABELS),
      namespaceSelector: randomSelector(r, NS_LABELS),
    };
  });
  // Excepts drawn from another block may lie outside: reported, and ignored as they must be.
  return { ports, from: peers };
}

function randomPolicy(r: Rand, ns: string, name: string): PolicySpec {
  const ingress = Array.from({ length: Math.floor(r() * 3) }, () => randomRule(r));
  const egress = Array.from({ length: Math.floor(r() * 3) }, () => randomRule(r)).map((x) => ({
    ports: x.ports,
    to: x.from,
  }));
  const types = pick(r, [[], ['Ingress'], ['Egress'], ['Ingress', 'Egress']] as const);
  return normalizePolicy(
    NetworkPolicy.parse({
      metadata: {
        uid: `uid-${ns}-${name}-${Math.floor(r() * 1e6)}`,
        name,
        namespace: ns,
        resourceVersion: String(Math.floor(r() * 1e6)),
        labels: {},
      },
      spec: { podSelector: randomSelector(r, LABELS), policyTypes: [...types], ingress, egress },
    }),
  );
}

function runSequence(seed: number, steps: number) {
  const r = prng(seed);
  const ids = new IdentityTable();
  // The first draw, so engineOpts(seed) can tell the reference what the engine was given.
  const engine = new PolicyEngine({ allowHost: maybe(r) });
  const nsLabels = new Map<string, Record<string, string>>(
    NAMESPACES.map((n) => [n, randomLabels(r, NS_LABELS)]),
  );
  // What the test knows, independently of the engine's own tables.
  const pods = new Map<string, PodInput>();
  const policies = new Map<string, PolicySpec>();
  /** What an agent of each node holds after applying every delta. */
  const nodes = new Map<string, Map<string, PodPolicyBody>>();

  const reshape = (old: PodInput, labels: Record<string, string>): PodInput =>
    makePod(ids, old.namespace, old.name, {
      labels,
      nsLabels: nsLabels.get(old.namespace) ?? {},
      node: old.node,
      ports: old.ports,
      ips: old.ips.map((p) => p.text.replace(/\/\d+$/, '')),
    });

  const drainInto = (): void => {
    for (const d of engine.drain()) {
      let held = nodes.get(d.node);
      if (held === undefined) nodes.set(d.node, (held = new Map<string, PodPolicyBody>()));
      if (d.op === 'delete') {
        // A delete names something the node has: no noise.
        expect(held.has(d.key), `delete ${d.key} on ${d.node}`).toBe(true);
        held.delete(d.key);
      } else {
        // An upsert changes something: unchanged messages are not sent again.
        expect(held.get(d.key), `upsert of an unchanged ${d.key}`).not.toEqual(d.body);
        held.set(d.key, d.body);
      }
    }
  };

  for (let i = 0; i < steps; i++) {
    const x = r();
    if (x < 0.3) {
      const ns = pick(r, NAMESPACES);
      const name = pick(r, POD_NAMES);
      const ips = [
        ...(maybe(r, 0.8) ? [pick(r, POD_V4)] : []),
        ...(maybe(r, 0.8) ? [pick(r, POD_V6)] : []),
      ];
      const pod = makePod(ids, ns, name, {
        labels: randomLabels(r, LABELS),
        nsLabels: nsLabels.get(ns) ?? {},
        node: pick(r, NODES),
        ports: some(r, CONTAINER_PORTS),
        ips,
      });
      pods.set(podKey(ns, name), pod);
      engine.upsertPod(pod);
    } else if (x < 0.42) {
      // One label of a pod changes: the benchmark's case.
      if (pods.size === 0) continue;
      const old = pick(r, [...pods.values()]);
      const k = pick(r, Object.keys(LABELS));
      const labels = Object.fromEntries(Object.entries(old.labels).filter(([key]) => key !== k));
      if (maybe(r)) labels[k] = pick(r, LABELS[k] as readonly string[]);
      const pod = reshape(old, labels);
      pods.set(podKey(pod.namespace, pod.name), pod);
      engine.upsertPod(pod);
    } else if (x < 0.52) {
      const ns = pick(r, NAMESPACES);
      const name = pick(r, POD_NAMES);
      pods.delete(podKey(ns, name));
      engine.removePod(ns, name);
    } else if (x < 0.57) {
      // A namespace's labels change: every pod of it gets its new identity, as the service does.
      const ns = pick(r, NAMESPACES);
      nsLabels.set(ns, randomLabels(r, NS_LABELS));
      for (const old of [...pods.values()].filter((p) => p.namespace === ns)) {
        const pod = reshape(old, { ...old.labels });
        pods.set(podKey(pod.namespace, pod.name), pod);
        engine.upsertPod(pod);
      }
    } else if (x < 0.75) {
      const p = randomPolicy(r, pick(r, NAMESPACES), pick(r, POLICY_NAMES));
      policies.set(p.key, p);
      engine.upsertPolicy(p);
    } else if (x < 0.82) {
      const ns = pick(r, NAMESPACES);
      const name = pick(r, POLICY_NAMES);
      policies.delete(`${ns}/${name}`);
      engine.removePolicy(ns, name);
    } else {
      drainInto();
    }
  }
  drainInto();
  return { engine, nodes, pods, policies };
}

function byNode(
  compiled: ReadonlyMap<string, CompiledPod>,
): Map<string, Map<string, PodPolicyBody>> {
  const out = new Map<string, Map<string, PodPolicyBody>>();
  for (const [key, c] of [...compiled].sort(([a], [b]) => (a < b ? -1 : 1))) {
    let m = out.get(c.node);
    if (m === undefined) out.set(c.node, (m = new Map<string, PodPolicyBody>()));
    m.set(key, c.body);
  }
  return out;
}

function sorted(m: ReadonlyMap<string, ReadonlyMap<string, PodPolicyBody>>) {
  return [...m]
    .filter(([, v]) => v.size > 0)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([node, v]) => [node, [...v].sort(([a], [b]) => (a < b ? -1 : 1))] as const);
}

describe('policy engine: incremental output equals output compiled from scratch', () => {
  // 300 sequences of 150 events; a failure names its seed, which replays it exactly.
  const seeds = Array.from({ length: 300 }, (_, i) => 7000 + i);

  it.each(seeds)('seed %i', (seed) => {
    const { engine, nodes, pods, policies } = runSequence(seed, 150);
    const want = compileAll(pods.values(), policies.values(), engineOpts(seed));
    // What the agents hold after every delta is what a from-scratch compile gives.
    expect(sorted(nodes)).toEqual(sorted(byNode(want)));
    expect(engine.published()).toEqual(want);
    // Checking everything again finds nothing to send.
    engine.markAll();
    expect(engine.drain()).toEqual([]);
  });

  it('a fresh engine fed the final world, policies last, publishes the same', () => {
    for (const seed of seeds.slice(0, 40)) {
      const { engine, pods, policies } = runSequence(seed, 150);
      const fresh = new PolicyEngine(engineOpts(seed));
      for (const p of pods.values()) fresh.upsertPod(p);
      for (const p of policies.values()) fresh.upsertPolicy(p);
      fresh.drain();
      expect(fresh.published()).toEqual(engine.published());
    }
  });
});

/** The engine's options as runSequence draws them (its first random number). */
function engineOpts(seed: number): { allowHost: boolean } {
  return { allowHost: prng(seed)() < 0.5 };
}
