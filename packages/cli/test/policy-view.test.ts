import { describe, expect, it } from 'vitest';
import {
  describeIdentity,
  describePorts,
  identityRows,
  policyView,
  renderIdentities,
  renderPolicy,
} from '../src/commands/policy-view.ts';
import { compiled, identity, podIdentity, status } from './policy-fixtures.ts';

describe('dyad identity list (pure)', () => {
  it('lists the reserved identities first, then allocated ones by number with their pods', () => {
    const rows = identityRows(
      [identity(0x10002, ['k8s:pod=b']), identity(0x10001, ['k8s:pod=a'])],
      [podIdentity('x', 'a2', 0x10001), podIdentity('x', 'a1', 0x10001)],
    );
    expect(rows.map((r) => r.identity)).toEqual([1, 2, 3, 4, 5, 0x10001, 0x10002]);
    expect(rows[5]?.pods).toEqual(['x/a1', 'x/a2']);
    expect(rows[6]?.pods).toEqual([]);
    const table = renderIdentities(rows, true);
    expect(table).toContain('reserved:world');
    expect(table.split('\n')[0]).toMatch(/^ID\s+LABELS\s+PODS$/);
    // the second pod of 65537 is on a line of its own, under an empty ID cell
    expect(table).toMatch(/\n\s+x\/a2\n/);
  });
});

describe('dyad policy get (pure)', () => {
  it('shows identity peers for both families and ipBlocks under their own family', () => {
    const v = policyView(
      'x',
      'a',
      podIdentity('x', 'a', 0x10001, 'node-1'),
      compiled({
        ingress: {
          enforce: true,
          peers: [
            { identities: [0x10002], allow: [{ protocol: 'TCP', ports: { from: 80, to: 81 } }] },
          ],
          cidrs: {
            IPv4: [
              { prefix: '198.18.0.0/20', allow: [{}] },
              { prefix: '198.18.0.7/32', allow: [] },
            ],
            IPv6: [],
          },
        },
      }),
      new Map(),
      [
        identity(0x10002, [
          'k8s:pod=b',
          'k8s-ns:kubernetes.io/metadata.name=x',
          'dyad:namespace=x',
        ]),
      ],
    );
    expect(v.ingress?.rules).toEqual([
      { family: 'both', peer: '65538 (k8s:pod=b, dyad:namespace=x)', allow: 'TCP/80-81' },
      { family: 'IPv4', peer: '198.18.0.0/20', allow: 'any' },
      { family: 'IPv4', peer: '198.18.0.7/32', allow: 'nothing (except)' },
    ]);
    expect(v.ingress?.closedFamilies).toEqual([]);
    expect(v.egress?.enforced).toBe(false);
    const text = renderPolicy(v);
    expect(text).toContain('Ingress: default deny, 3 rule(s)');
    expect(text).toContain('Egress: open');
  });

  it('says when a direction admits nothing over one family (IPv4-only ipBlocks)', () => {
    const v = policyView(
      'x',
      'a',
      podIdentity('x', 'a', 0x10001, 'node-1'),
      compiled({
        egress: {
          enforce: true,
          peers: [],
          cidrs: { IPv4: [{ prefix: '198.18.0.0/15', allow: [{}] }], IPv6: [] },
        },
      }),
      new Map(),
      [],
    );
    expect(v.egress?.closedFamilies).toEqual(['IPv6']);
    expect(renderPolicy(v)).toContain('nothing admitted over IPv6');
  });

  it('lists the problems of the policies that select the pod, and only theirs', () => {
    const v = policyView(
      'x',
      'a',
      podIdentity('x', 'a', 0x10001, 'node-1'),
      compiled({ policies: ['p1'] }),
      new Map([
        [
          'x/p1',
          status('x', 'p1', [
            {
              code: 'bad-port-range',
              path: 'spec.ingress[0].ports[0]',
              message: 'endPort below port: allows nothing',
            },
          ]),
        ],
        [
          'x/p2',
          status('x', 'p2', [{ code: 'bad-peer', path: 'spec.ingress[0].from[0]', message: 'x' }]),
        ],
      ]),
      [],
    );
    expect(v.problems.map((p) => `${p.policy} ${p.code}`)).toEqual(['p1 bad-port-range']);
    expect(renderPolicy(v)).toContain('Not enforced as written');
  });

  it('says when nothing is computed yet', () => {
    const v = policyView('x', 'a', podIdentity('x', 'a', 0x10001), undefined, new Map(), []);
    expect(v.computed).toBe(false);
    expect(renderPolicy(v)).toContain('has published no policy for this pod yet');
  });

  it('names reserved and unknown peers, and port sets', () => {
    expect(describeIdentity(0, new Map())).toBe('any peer');
    expect(describeIdentity(2, new Map())).toBe('2 (reserved:world)');
    expect(describeIdentity(70000, new Map())).toBe('70000 (labels unknown)');
    expect(
      describePorts([{ protocol: 'UDP' }, { protocol: 'SCTP', ports: { from: 9, to: 9 } }]),
    ).toBe('UDP/any, SCTP/9');
    expect(describePorts([])).toBe('nothing');
  });
});
