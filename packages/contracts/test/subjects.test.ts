import { describe, expect, it } from 'vitest';
import { decodeToken, encodeToken, k8sObjectSubject, parseK8sObjectSubject } from '../src/index.ts';

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
