import { describe, expect, it } from 'vitest';
import {
  FlowEvent,
  decodeToken,
  encodeToken,
  flowFilters,
  flowSubject,
  k8sObjectSubject,
  parseK8sObjectSubject,
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
      for (let j = 0; j < n; j++) raw += alphabet[(i * 7 + j * 13) % alphabet.length];
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
