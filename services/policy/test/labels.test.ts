import { describe, expect, it } from 'vitest';
import {
  identityLabels,
  labelSetHash,
  namespaceLabels,
  selectorMatches,
  selectorProblem,
  splitIdentityLabels,
} from '../src/labels.ts';

const sel = (
  matchLabels: Record<string, string>,
  ...matchExpressions: Array<{
    key: string;
    operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
    values?: string[];
  }>
) => ({ matchLabels, matchExpressions: matchExpressions.map((e) => ({ values: [], ...e })) });

describe('label selectors, as Kubernetes reads them', () => {
  const labels = { app: 'web', tier: 'front' };

  it.each([
    ['empty selector matches everything', sel({}), true],
    ['matchLabels all equal', sel({ app: 'web', tier: 'front' }), true],
    ['matchLabels one differs', sel({ app: 'web', tier: 'back' }), false],
    ['matchLabels key missing', sel({ zone: 'a' }), false],
    ['In with the value', sel({}, { key: 'app', operator: 'In', values: ['db', 'web'] }), true],
    ['In without the value', sel({}, { key: 'app', operator: 'In', values: ['db'] }), false],
    ['In on an absent key', sel({}, { key: 'zone', operator: 'In', values: ['a'] }), false],
    ['NotIn with the value', sel({}, { key: 'app', operator: 'NotIn', values: ['web'] }), false],
    ['NotIn without the value', sel({}, { key: 'app', operator: 'NotIn', values: ['db'] }), true],
    [
      'NotIn on an absent key holds',
      sel({}, { key: 'zone', operator: 'NotIn', values: ['a'] }),
      true,
    ],
    ['Exists', sel({}, { key: 'tier', operator: 'Exists' }), true],
    ['Exists on an absent key', sel({}, { key: 'zone', operator: 'Exists' }), false],
    ['DoesNotExist', sel({}, { key: 'zone', operator: 'DoesNotExist' }), true],
    ['DoesNotExist on a present key', sel({}, { key: 'app', operator: 'DoesNotExist' }), false],
    [
      'labels and expressions must all hold',
      sel({ app: 'web' }, { key: 'tier', operator: 'In', values: ['back'] }),
      false,
    ],
  ])('%s', (_, s, want) => {
    expect(selectorMatches(s, labels)).toBe(want);
  });

  it('a key present with an empty value is present', () => {
    expect(selectorMatches(sel({}, { key: 'x', operator: 'Exists' }), { x: '' })).toBe(true);
    expect(selectorMatches(sel({}, { key: 'x', operator: 'NotIn', values: [''] }), { x: '' })).toBe(
      false,
    );
  });

  it('selectors the apiserver would refuse are named', () => {
    expect(selectorProblem(sel({}, { key: 'a', operator: 'In' }))).toMatch(/no values/);
    expect(selectorProblem(sel({}, { key: 'a', operator: 'Exists', values: ['x'] }))).toMatch(
      /ignored/,
    );
    expect(selectorProblem(sel({ a: 'b' }))).toBeUndefined();
  });
});

describe('identity labels', () => {
  it('pod labels, namespace labels and the namespace name, sorted, each from its own source', () => {
    const ns = namespaceLabels('prod', { team: 'a' });
    expect(identityLabels('prod', { app: 'web' }, ns)).toEqual([
      'dyad:namespace=prod',
      'k8s-ns:kubernetes.io/metadata.name=prod',
      'k8s-ns:team=a',
      'k8s:app=web',
    ]);
  });

  it('a pod label cannot pass for a namespace label', () => {
    const spoof = identityLabels('prod', { team: 'a' }, namespaceLabels('prod', {}));
    const real = identityLabels('prod', {}, namespaceLabels('prod', { team: 'a' }));
    expect(labelSetHash(spoof)).not.toBe(labelSetHash(real));
    expect(splitIdentityLabels(spoof)).toEqual({
      namespace: 'prod',
      podLabels: { team: 'a' },
      nsLabels: { 'kubernetes.io/metadata.name': 'prod' },
    });
  });

  it('the order labels come in does not matter; values with "=" survive the round trip', () => {
    const a = identityLabels('x', { b: '1', a: 'k=v' }, {});
    const b = identityLabels('x', { a: 'k=v', b: '1' }, {});
    expect(labelSetHash(a)).toBe(labelSetHash(b));
    expect(splitIdentityLabels(a)?.podLabels).toEqual({ a: 'k=v', b: '1' });
  });
});
