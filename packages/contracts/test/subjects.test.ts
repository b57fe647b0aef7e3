import { describe, expect, it } from 'vitest';
import {
  ALL_CONTRACTS,
  FlowEvent,
  IPAM_EXHAUSTED_FILTER,
  IPAM_GROW_FILTER,
  IPAM_HELD_FILTER,
  IPAM_NODE_FILTER,
  IpamEventKind,
  agentEndpointFilter,
  agentEndpointSubject,
  decodeToken,
  encodeToken,
  flowFilters,
  flowSubject,
  ipamAllocFilter,
  ipamAllocSubject,
  ipamEventSubject,
  ipamExhaustedSubject,
  ipamGrowSubject,
  uninstallSubject,
  ipamHeldSubject,
  ipamNodeSubject,
  k8sObjectSubject,
  nodePolicySubject,
  parseK8sObjectSubject,
  parseNodePolicySubject,
  policyIdentitySubject,
  policyPodSubject,
  policyStatusSubject,
  routerIpcacheFilter,
  routerIpcacheSubject,
  routerNodeFilter,
  routerRouteFilter,
  routerRouteSubject,
  routerServiceSubject,
  routerSyncSubject,
  subjectMatches,
} from '../src/index.ts';
import { FLOW_SAMPLE } from './samples.ts';

describe('subject tokens', () => {
  it('a dotted Kubernetes name stays one token', () => {
    const s = k8sObjectSubject('Node', undefined, 'node-1.lab.example');
    expect(s).toBe('dyad.k8s.v1.node._.node-1%2Elab%2Eexample');
    expect(s.split('.')).toHaveLength(6);
  });

  it('round-trips every character NATS forbids in a token', () => {
    for (const raw of ['a.b', 'a*b', 'a>b', '100%', 'a b', 'tab\there', '%2E', 'plain-name']) {
      const t = encodeToken(raw);
      expect(t).not.toMatch(/[.*>\s]/);
      expect(decodeToken(t)).toBe(raw);
    }
  });

  it('random strings round-trip', () => {
    const alphabet = 'ab.*>% \t-_0%2E';
    for (let i = 0; i < 500; i++) {
      let raw = '';
      const n = 1 + (i % 12);
      for (let j = 0; j < n; j++) raw += alphabet.charAt((i * 7 + j * 13) % alphabet.length);
      expect(decodeToken(encodeToken(raw))).toBe(raw);
    }
  });

  it('parses what it builds, for namespaced and cluster-scoped kinds', () => {
    expect(parseK8sObjectSubject(k8sObjectSubject('Pod', 'prod', 'web.0'))).toEqual({
      kind: 'pod',
      namespace: 'prod',
      name: 'web.0',
    });
    expect(parseK8sObjectSubject(k8sObjectSubject('Namespace', undefined, 'prod'))).toEqual({
      kind: 'namespace',
      namespace: undefined,
      name: 'prod',
    });
    expect(parseK8sObjectSubject('dyad.other.v1.pod.a.b')).toBeUndefined();
  });

  it('refuses an empty token', () => {
    expect(() => encodeToken('')).toThrow(/empty/);
  });
});

describe("a contract's subject pattern is what its builder builds", () => {
  // Builders called with the placeholders themselves ('{' and '}' need no escaping) must spell the
  // pattern the docs show, so the documented subject and the built one cannot drift apart.
  const p = (name: string) => `{${name}}`;
  const builders: Readonly<Record<string, () => string>> = {
    'io.dyad.k8s.node.v1': () => k8sObjectSubject('Node', undefined, p('name')),
    'io.dyad.k8s.namespace.v1': () => k8sObjectSubject('Namespace', undefined, p('name')),
    'io.dyad.k8s.pod.v1': () => k8sObjectSubject('Pod', p('namespace'), p('name')),
    'io.dyad.k8s.service.v1': () => k8sObjectSubject('Service', p('namespace'), p('name')),
    'io.dyad.k8s.endpointslice.v1': () =>
      k8sObjectSubject('EndpointSlice', p('namespace'), p('name')),
    'io.dyad.k8s.networkpolicy.v1': () =>
      k8sObjectSubject('NetworkPolicy', p('namespace'), p('name')),
    'io.dyad.ipam.node.v1': () => ipamNodeSubject(p('name')),
    'io.dyad.ipam.allocated.v1': () => ipamAllocSubject(p('node'), p('containerId')),
    'io.dyad.ipam.released.v1': () => ipamAllocSubject(p('node'), p('containerId')),
    'io.dyad.ipam.exhausted.v1': () => ipamExhaustedSubject(p('node')),
    'io.dyad.ipam.gc.v2': () => ipamEventSubject(IpamEventKind.gc),
    'io.dyad.ipam.grow.v1': () => ipamGrowSubject(p('node')),
    'io.dyad.agent.uninstall.v1': () => uninstallSubject(p('node')),
    'io.dyad.ipam.held.v1': () => ipamHeldSubject(p('node')),
    'io.dyad.router.ipcache.v1': () => routerIpcacheSubject(p('node'), p('prefix')),
    'io.dyad.router.route.v1': () => routerRouteSubject(p('node'), p('cidr')),
    'io.dyad.router.sync.v1': () => routerSyncSubject(p('node')),
    'io.dyad.router.service.v1': () => routerServiceSubject(p('node'), p('namespace'), p('name')),
    // a flow's subject is built from the flow itself; the filter builder has one token per
    // placeholder, in the pattern's order
    'io.dyad.flow.v1': () => {
      const names = ['node', 'verdict', 'family', 'sourceNamespace', 'destinationNamespace'];
      let i = 0;
      return (flowFilters({})[0] ?? '').replace(/\*/g, () => p(names[i++] ?? ''));
    },
    'io.dyad.agent.endpoint.v1': () =>
      agentEndpointSubject(p('node'), p('containerId'), p('ifName')),
    'io.dyad.node.policy.v2': () => nodePolicySubject(p('node'), p('namespace'), p('name')),
    // identities are numbers on the wire and in the builder; the pattern names the token
    'io.dyad.policy.identity.v1': () => policyIdentitySubject(7).replace(/7$/, p('identity')),
    'io.dyad.policy.pod-identity.v1': () => policyPodSubject(p('namespace'), p('name')),
    'io.dyad.policy.status.v1': () => policyStatusSubject(p('namespace'), p('name')),
  };

  it.each(ALL_CONTRACTS.filter((c) => !c.subjectPattern.startsWith('(')).map((c) => [c.type, c]))(
    '%s',
    (type, c) => {
      const build = builders[type];
      expect(build, `no builder listed for ${type}`).toBeDefined();
      expect(build?.()).toBe(c.subjectPattern);
    },
  );

  it('filters match the subjects they name and no others', () => {
    const alloc = ipamAllocSubject('node-1.lab', 'c1');
    expect(subjectMatches(ipamAllocFilter('node-1.lab'), alloc)).toBe(true);
    expect(subjectMatches(ipamAllocFilter(), alloc)).toBe(true);
    expect(subjectMatches(ipamAllocFilter('node-2'), alloc)).toBe(false);
    expect(subjectMatches(IPAM_NODE_FILTER, ipamNodeSubject('n.1'))).toBe(true);
    expect(subjectMatches(IPAM_HELD_FILTER, ipamHeldSubject('n1'))).toBe(true);
    expect(subjectMatches(IPAM_GROW_FILTER, ipamGrowSubject('n1'))).toBe(true);
    expect(subjectMatches(IPAM_EXHAUSTED_FILTER, ipamExhaustedSubject('n1'))).toBe(true);
    expect(subjectMatches(IPAM_EXHAUSTED_FILTER, ipamEventSubject(IpamEventKind.gc))).toBe(false);
    const ipc = routerIpcacheSubject('n1', '198.18.0.0/24');
    expect(subjectMatches(routerIpcacheFilter('n1'), ipc)).toBe(true);
    expect(subjectMatches(routerRouteFilter('n1'), ipc)).toBe(false);
    expect(subjectMatches(routerNodeFilter('n1'), ipc)).toBe(true);
    const ep = agentEndpointSubject('n1', 'c1', 'eth0');
    expect(subjectMatches(agentEndpointFilter(), ep)).toBe(true);
    expect(subjectMatches(agentEndpointFilter('n2'), ep)).toBe(false);
    expect(subjectMatches('a.>', 'a')).toBe(false);
    expect(subjectMatches('a.*', 'a.b.c')).toBe(false);
  });
});

describe('node policy subjects', () => {
  it('parse back to what built them, dotted names included; other subjects do not parse', () => {
    const s = nodePolicySubject('node-1.lab', 'prod.x', 'web.0');
    expect(parseNodePolicySubject(s)).toEqual({
      node: 'node-1.lab',
      namespace: 'prod.x',
      name: 'web.0',
    });
    expect(parseNodePolicySubject(policyPodSubject('a', 'b'))).toBeUndefined();
    expect(parseNodePolicySubject(`${s}.extra`)).toBeUndefined();
  });
});

describe('flow subjects', () => {
  const flow = FlowEvent.schema.parse(FLOW_SAMPLE);

  it('carry node, verdict, family and both namespaces as tokens', () => {
    expect(flowSubject({ ...flow, node_name: 'node-1.lab' })).toBe(
      'dyad.flow.v1.node-1%2Elab.dropped.ipv6.prod.prod',
    );
    const world = { ...flow, source: { identity: 2, labels: [] } };
    expect(flowSubject(world)).toBe('dyad.flow.v1.node-a.dropped.ipv6._.prod');
  });

  // A NATS subject match: '*' is one token, literal tokens must be equal.
  const matches = (filter: string, subject: string) => {
    const f = filter.split('.');
    const s = subject.split('.');
    return f.length === s.length && f.every((t, i) => t === '*' || t === s[i]);
  };

  it('filters select a namespace at either end and nothing else', () => {
    const fs = flowFilters({ namespace: 'prod', verdict: 'DROPPED', ipVersion: 'IPv6' });
    const hit = (f: typeof flow) => fs.some((x) => matches(x, flowSubject(f)));
    expect(hit(flow)).toBe(true);
    expect(hit({ ...flow, source: { ...flow.source, namespace: 'other' } })).toBe(true);
    expect(hit({ ...flow, destination: { ...flow.destination, namespace: 'other' } })).toBe(true);
    const elsewhere = {
      ...flow,
      source: { ...flow.source, namespace: 'a' },
      destination: { ...flow.destination, namespace: 'b' },
    };
    expect(hit(elsewhere)).toBe(false);
    expect(hit({ ...flow, verdict: 'FORWARDED' })).toBe(false);
    expect(hit({ ...flow, IP: { ...flow.IP, ipVersion: 'IPv4' } })).toBe(false);
    expect(flowFilters({})).toEqual(['dyad.flow.v1.*.*.*.*.*']);
    expect(flowFilters({ node: 'n.1' })).toEqual(['dyad.flow.v1.n%2E1.*.*.*.*']);
  });
});
