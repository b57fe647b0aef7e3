// The chaos suite's own logic, without a lab: the invariant check finds each kind of damage it
// names, the gap meter measures the longest outage, and the kube-bridge outage outlasts every grace.
import { FAMILIES } from '@dyad/netaddr';
import { describe, expect, it } from 'vitest';
import { GapMeter } from '../src/chaos/connectivity.ts';
import { violations } from '../src/chaos/invariants.ts';
import type { BusFact, Snapshot } from '../src/chaos/invariants.ts';
import { PROFILES, outlastGracesMs } from '../src/chaos/profile.ts';

const healthy: Snapshot = {
  families: ['IPv4', 'IPv6'],
  pods: [
    { name: 'a', node: 'n1', podIPs: ['198.18.0.2', 'fd00::2'] },
    { name: 'b', node: 'n2', podIPs: ['198.18.1.2', 'fd00::1:2'] },
  ],
  terminating: new Set(['c']),
  deleted: new Set(['c', 'd']),
  endpoints: [
    { node: 'n1', pod: 'a', phase: 'ready', addresses: ['198.18.0.2', 'fd00::2'] },
    { node: 'n2', pod: 'b', phase: 'ready', addresses: ['198.18.1.2', 'fd00::1:2'] },
    // being deleted: its endpoint may still be there
    { node: 'n2', pod: 'c', phase: 'ready', addresses: ['198.18.1.3', 'fd00::1:3'] },
  ],
  nodes: ['n1', 'n2'].map((node) => ({
    node,
    blocks: FAMILIES,
    drift: { endpoints: 0, ipcache: 0, policy: 0, policyCidr: 0 },
  })),
  bridged: new Map([
    ['a', 'upsert'],
    ['b', 'upsert'],
    ['c', 'upsert'],
    ['d', 'delete'],
  ]),
  matrixFailures: [],
  bus: {
    streams: new Map([
      ['DYAD_K8S', 3],
      ['KV_dyad-ipam', 3],
    ]),
    replicas: 3,
    ipamNodes: new Set(['n1', 'n2']),
    endpointRecords: new Set(['a', 'b', 'c']),
    ipcache: new Map(
      ['n1', 'n2'].map((n) => [
        n,
        new Set(['198.18.0.2/32', 'fd00::2/128', '198.18.1.2/32', 'fd00::1:2/128']),
      ]),
    ),
  },
};
const healthyBus = healthy.bus as BusFact;

describe('chaos invariants', () => {
  it('a healthy snapshot has none', () => {
    expect(violations(healthy)).toEqual([]);
  });

  it.each<[string, Partial<Snapshot>, RegExp]>([
    [
      'a pod without an endpoint',
      { endpoints: healthy.endpoints.filter((e) => e.pod !== 'b') },
      /^b: 0 endpoints/,
    ],
    [
      'a pod with two addresses of a family',
      {
        endpoints: healthy.endpoints.map((e) =>
          e.pod === 'a' ? { ...e, addresses: [...e.addresses, '198.18.0.9'] } : e,
        ),
      },
      /^a: 2 IPv4 addresses/,
    ],
    [
      'two pods sharing an address',
      {
        endpoints: healthy.endpoints.map((e) =>
          e.pod === 'b' ? { ...e, addresses: ['198.18.0.2', 'fd00::1:2'] } : e,
        ),
        pods: healthy.pods.map((p) =>
          p.name === 'b' ? { ...p, podIPs: ['198.18.0.2', 'fd00::1:2'] } : p,
        ),
      },
      /^198\.18\.0\.2 held by both a and b/,
    ],
    [
      "a deleted pod's address still held",
      {
        endpoints: [
          ...healthy.endpoints,
          { node: 'n1', pod: 'd', phase: 'ready', addresses: ['198.18.0.7', 'fd00::7'] },
        ],
      },
      /^d \(deleted\): n1 still holds/,
    ],
    [
      'status.podIPs that differ from what the agent holds',
      {
        pods: healthy.pods.map((p) =>
          p.name === 'a' ? { ...p, podIPs: ['198.18.0.5', 'fd00::2'] } : p,
        ),
      },
      /^a: status\.podIPs/,
    ],
    [
      'map drift on a node',
      {
        nodes: healthy.nodes.map((n) =>
          n.node === 'n2' ? { ...n, drift: { ...n.drift, ipcache: 2 } } : n,
        ),
      },
      /^n2: 2 ipcache entries differ/,
    ],
    [
      'a node that lost its block',
      { nodes: healthy.nodes.map((n) => (n.node === 'n1' ? { ...n, blocks: ['IPv4'] } : n)) },
      /^n1: no IPv6 block/,
    ],
    [
      'an unreachable agent',
      {
        nodes: healthy.nodes.map((n) =>
          n.node === 'n1' ? { node: 'n1', blocks: [], unreachable: 'ECONNREFUSED' } : n,
        ),
      },
      /^n1: agent unreachable/,
    ],
    [
      'a pod kube-bridge never published',
      { bridged: new Map([['a', 'upsert']]) },
      /^b: not in DYAD_K8S/,
    ],
    [
      'a deleted pod kube-bridge still shows live',
      { bridged: new Map([...(healthy.bridged as Map<string, 'upsert'>), ['d', 'upsert']]) },
      /^d \(deleted\): DYAD_K8S still has it live/,
    ],
    ['a hole in the matrix', { matrixFailures: ['a->b IPv6 timeout'] }, /^matrix: a->b IPv6/],
    [
      'a stream NATS lost',
      { bus: { ...healthyBus, streams: new Map([['DYAD_K8S', undefined]]) } },
      /^stream DYAD_K8S missing/,
    ],
    [
      'a stream with fewer replicas',
      { bus: { ...healthyBus, streams: new Map([['KV_dyad-ipam', 1]]) } },
      /^stream KV_dyad-ipam: 1 replicas, not 3/,
    ],
    [
      "a node's block record ipam did not publish again",
      { bus: { ...healthyBus, ipamNodes: new Set(['n1']) } },
      /^n2: no block record from ipam/,
    ],
    [
      'an endpoint record its agent did not publish again',
      { bus: { ...healthyBus, endpointRecords: new Set(['a']) } },
      /^b: no endpoint record from its agent/,
    ],
    [
      "a pod's address missing from a node's ipcache on the bus",
      {
        bus: {
          ...healthyBus,
          ipcache: new Map([...healthyBus.ipcache, ['n2', new Set(['198.18.0.2/32'])]]),
        },
      },
      /^n2: no ipcache entry from the router for a's fd00::2/,
    ],
    ['a bus that could not be read', { bus: 'timeout' }, /^the bus not readable: timeout/],
  ])('finds %s', (_what, change, expected) => {
    const found = violations({ ...healthy, ...change });
    expect(
      found.some((v) => expected.test(v)),
      found.join('\n'),
    ).toBe(true);
  });
});

describe('the gap meter', () => {
  it('reports the longest stretch without a success per family, open ones up to now', () => {
    const m = new GapMeter(FAMILIES);
    for (const t of [0, 500, 1000]) m.record('a->b', 'IPv4', true, t);
    m.record('a->b', 'IPv4', false, 1500);
    m.record('a->b', 'IPv4', false, 2000);
    m.record('a->b', 'IPv4', true, 4000);
    m.record('a->b', 'IPv6', true, 0);
    m.record('a->b', 'IPv6', false, 500);
    expect(m.take(6000)).toEqual({ IPv4: 3000, IPv6: 6000 });
  });
});

describe('profiles', () => {
  it('kube-bridge stays down longer than every GC grace plus a GC pass', () => {
    for (const p of Object.values(PROFILES)) {
      const g = p.graces;
      for (const grace of [g.ipamNodeS, g.ipamOrphanS, g.policyIdentityS])
        expect(outlastGracesMs(p)).toBeGreaterThan((grace + g.ipamGcIntervalS) * 1000);
    }
  });
});
