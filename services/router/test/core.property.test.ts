import { prng } from '@dyad/testbed';
import { describe, expect, it } from 'vitest';
import { computeState } from '../src/compute.ts';
import { RouterCore } from '../src/core.ts';
import { applyUpdate, diffState } from '../src/diff.ts';
import type {
  EndpointInput,
  IpcacheEntry,
  NodeInput,
  NodeState,
  RouteEntry,
} from '../src/model.ts';

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
const maybe = (r: Rand, p = 0.5): boolean => r() < p;

const NODES = ['n0', 'n1', 'n2', 'n3', 'node-4.lab'];
const ENDPOINTS = ['e0', 'e1', 'e2', 'e3', 'e4', 'e5', 'e6', 'e7', 'e8', 'e9'];
// Small pools so claims collide: two nodes on one CIDR or address, pods on a node's address,
// one pod address on two endpoints. Some spellings are not canonical on purpose.
const CIDR4 = [
  '198.18.0.0/24',
  '198.18.1.0/24',
  '198.18.2.7/24',
  '198.18.3.0/24',
  '198.18.4.0/24',
  '198.18.5.0/24',
];
const CIDR6 = [
  'fd00:18::/64',
  'fd00:18:1::/64',
  'fd00:18:2:0::/64',
  'fd00:18:3::/64',
  'fd00:18:4::/64',
  'fd00:18:5::/64',
];
const ADDR4 = ['198.19.0.1', '198.19.0.2', '198.19.0.3', '198.18.1.1'];
const ADDR6 = ['fd00:19::1', 'fd00:19::2', 'fd00:0019:0::3', 'fd00:18:1::1'];
const POD4 = ['198.18.0.1', '198.18.1.1', '198.18.1.2', '198.18.2.3', '198.18.3.9'];
const POD6 = ['fd00:18::1', 'fd00:18:1::1', 'FD00:18:1::2', 'fd00:18:2::3', 'fd00:18:3::9'];

/**
 * A node's IPAM assignment: 0 to 3 block sets, a set one block per family (a family sometimes
 * missing, a set sometimes repeating a block, as a conflict or a stale event might).
 */
function randomPodCidrs(r: Rand): string[] {
  const out: string[] = [];
  const sets = Math.floor(r() * 4);
  for (let k = 0; k < sets; k++) {
    if (maybe(r, 0.85)) out.push(pick(r, CIDR4));
    if (maybe(r, 0.85)) out.push(pick(r, CIDR6));
  }
  return out;
}

function randomNode(r: Rand): NodeInput {
  return {
    podCidrs: randomPodCidrs(r),
    addresses: {
      ...(maybe(r, 0.8) ? { IPv4: pick(r, ADDR4) } : {}),
      ...(maybe(r, 0.8) ? { IPv6: pick(r, ADDR6) } : {}),
    },
  };
}

function randomEndpoint(r: Rand): EndpointInput {
  const ips: string[] = [];
  if (maybe(r, 0.85)) ips.push(pick(r, POD4));
  if (maybe(r, 0.85)) ips.push(pick(r, POD6));
  return {
    node: pick(r, [...NODES, 'ghost']),
    identity: pick(r, [70000, 70001, 80000]),
    ips,
    since: Math.floor(r() * 4),
    ...(maybe(r) ? { pod: { namespace: pick(r, ['a', 'b']), name: pick(r, ['web', 'db']) } } : {}),
  };
}

interface Consumer {
  ipcache: Map<string, IpcacheEntry>;
  routes: Map<string, RouteEntry>;
}

function plain(s: NodeState): { ipcache: IpcacheEntry[]; routes: RouteEntry[] } {
  const byKey = <T>(m: ReadonlyMap<string, T>) =>
    [...m].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, v]) => v);
  return { ipcache: byKey(s.ipcache), routes: byKey(s.routes) };
}

function runSequence(seed: number, steps: number) {
  const r = prng(seed);
  const core = new RouterCore();
  const nodes = new Map<string, NodeInput>();
  const endpoints = new Map<string, EndpointInput>();
  const consumers = new Map<string, Consumer>();
  let lastRevision = 0;

  const drainInto = (): void => {
    for (const u of core.drain()) {
      expect(u.revision).toBeGreaterThan(lastRevision);
      let c = consumers.get(u.node);
      if (c === undefined) {
        // Only a node the consumer has not seen yet may start from nothing.
        expect(u.gone).toBe(false);
        c = { ipcache: new Map(), routes: new Map() };
        consumers.set(u.node, c);
      }
      // A delete always names something the node has: no noise, no lost updates.
      for (const p of u.ipcacheDeletes)
        expect(c.ipcache.has(p), `delete ${p} on ${u.node}`).toBe(true);
      for (const cidr of u.routeDeletes)
        expect(c.routes.has(cidr), `delete ${cidr} on ${u.node}`).toBe(true);
      applyUpdate(c, u);
      expect(c.ipcache.size).toBe(u.ipcacheEntries);
      expect(c.routes.size).toBe(u.routes);
      if (u.gone) {
        expect(c.ipcache.size + c.routes.size).toBe(0);
        consumers.delete(u.node);
      }
    }
    lastRevision = core.revision;
  };

  for (let i = 0; i < steps; i++) {
    const x = r();
    if (x < 0.12) {
      const name = pick(r, NODES);
      const n = randomNode(r);
      nodes.set(name, n);
      core.setNode(name, n);
    } else if (x < 0.2) {
      // A node's agent got one more block set: the assignment grows by a set.
      const name = pick(r, NODES);
      const prev = nodes.get(name);
      if (prev === undefined) continue;
      const n = { ...prev, podCidrs: [...prev.podCidrs, pick(r, CIDR4), pick(r, CIDR6)] };
      nodes.set(name, n);
      core.setNode(name, n);
    } else if (x < 0.3) {
      const name = pick(r, NODES);
      nodes.delete(name);
      core.removeNode(name);
    } else if (x < 0.6) {
      const id = pick(r, ENDPOINTS);
      const e = randomEndpoint(r);
      endpoints.set(id, e);
      core.setEndpoint(id, e);
    } else if (x < 0.75) {
      const id = pick(r, ENDPOINTS);
      endpoints.delete(id);
      core.removeEndpoint(id);
    } else {
      drainInto();
    }
  }
  drainInto();
  return { core, consumers, expected: computeState({ nodes, endpoints }) };
}

describe('router core: incremental output equals output computed from scratch', () => {
  // 300 sequences of 200 events each; a failure names its seed, which replays it exactly.
  const seeds = Array.from({ length: 300 }, (_, i) => 1000 + i);

  it.each(seeds)('seed %i', (seed) => {
    const { core, consumers, expected } = runSequence(seed, 200);
    expect([...consumers.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [node, want] of expected) {
      const got = consumers.get(node);
      expect(got, `node ${node}`).toBeDefined();
      if (got === undefined) continue;
      expect(plain(got), `consumer state of ${node}`).toEqual(plain(want));
      expect(plain(core.state(node)), `core state of ${node}`).toEqual(plain(want));
    }
    // Nothing is pending after the last drain.
    expect(core.drain()).toEqual([]);
  });

  it('a reconcile from any published state reaches the computed state', () => {
    for (const seed of seeds.slice(0, 50)) {
      const { expected } = runSequence(seed, 150);
      const { consumers: stale } = runSequence(seed + 7777, 150);
      for (const node of new Set([...expected.keys(), ...stale.keys()])) {
        const have = stale.get(node) ?? { ipcache: new Map(), routes: new Map() };
        const copy = { ipcache: new Map(have.ipcache), routes: new Map(have.routes) };
        const u = diffState(node, 1, expected.get(node), have);
        applyUpdate(copy, u);
        const want = expected.get(node) ?? { ipcache: new Map(), routes: new Map() };
        expect(plain(copy)).toEqual(plain(want));
        expect(u.gone).toBe(!expected.has(node));
      }
    }
  });
});
