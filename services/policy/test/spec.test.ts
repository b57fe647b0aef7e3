import { PolicyProblemCode } from '@dyad/contracts';
import { describe, expect, it } from 'vitest';
import { makePolicy } from './world.ts';

describe('normalizing a NetworkPolicy', () => {
  it('policyTypes absent: Ingress, plus Egress when there are egress rules', () => {
    expect(makePolicy('x', 'p', { podSelector: {} })).toMatchObject({
      ingress: [],
      egress: undefined,
    });
    const both = makePolicy('x', 'p', { podSelector: {}, egress: [{}] });
    expect(both.ingress).toEqual([]);
    expect(both.egress).toEqual([{ ports: [{ kind: 'any' }], peers: 'all' }]);
    expect(
      makePolicy('x', 'p', { podSelector: {}, policyTypes: ['Egress'], ingress: [{}] }).ingress,
    ).toBeUndefined();
  });

  it('an empty from/to is every peer; a from whose peers are all unusable is no peer at all', () => {
    const p = makePolicy('x', 'p', {
      podSelector: {},
      ingress: [{ from: [] }, { from: [{}] }],
    });
    expect(p.ingress?.map((r) => r.peers)).toEqual(['all', []]);
    expect(p.problems).toEqual([
      {
        code: PolicyProblemCode.badPeer,
        path: 'spec.ingress[1].from[0]',
        message: expect.stringMatching(/matches nothing/) as unknown,
      },
    ]);
  });

  it('what the apiserver would refuse is read the way that allows least, and reported', () => {
    const p = makePolicy('x', 'p', {
      podSelector: {},
      ingress: [
        {
          ports: [
            { port: 'http', endPort: 90 },
            { port: 90, endPort: 80 },
            { endPort: 80 },
            { port: 0 },
            { port: 8080, endPort: 8090 },
          ],
          from: [
            { ipBlock: { cidr: '198.18.0.0/16', except: ['198.19.0.0/24', 'fd00::/64'] } },
            { ipBlock: { cidr: '198.18.0.0/16' }, podSelector: {} },
          ],
        },
      ],
    });
    expect(p.ingress?.[0]?.ports).toEqual([
      { kind: 'named', protocol: 'TCP', name: 'http' },
      { kind: 'range', protocol: 'TCP', from: 8080, to: 8090 },
    ]);
    expect(p.ingress?.[0]?.peers).toEqual([
      {
        kind: 'block',
        prefix: expect.objectContaining({ text: '198.18.0.0/16' }) as unknown,
        excepts: [],
      },
    ]);
    expect(p.problems.map((x) => `${x.code} ${x.path}`)).toEqual([
      'named-port-with-end-port spec.ingress[0].ports[0]',
      'bad-port-range spec.ingress[0].ports[1]',
      'bad-port-range spec.ingress[0].ports[2]',
      'port-out-of-range spec.ingress[0].ports[3]',
      'except-outside-cidr spec.ingress[0].from[0].ipBlock.except[0]',
      'except-outside-cidr spec.ingress[0].from[0].ipBlock.except[1]',
      'bad-peer spec.ingress[0].from[1]',
    ]);
  });

  it('SCTP ports, numbered and named, are compiled like TCP and UDP and not reported', () => {
    const p = makePolicy('x', 'p', {
      podSelector: {},
      ingress: [
        {
          ports: [
            { protocol: 'SCTP', port: 9000, endPort: 9010 },
            { protocol: 'SCTP', port: 'sctp-serve' },
            { protocol: 'SCTP' },
          ],
        },
      ],
    });
    expect(p.ingress?.[0]?.ports).toEqual([
      { kind: 'range', protocol: 'SCTP', from: 9000, to: 9010 },
      { kind: 'named', protocol: 'SCTP', name: 'sctp-serve' },
      { kind: 'range', protocol: 'SCTP', from: 0, to: 65535 },
    ]);
    expect(p.problems).toEqual([]);
  });

  it('a clean policy has no problems', () => {
    expect(
      makePolicy('x', 'p', {
        podSelector: { matchLabels: { app: 'web' } },
        ingress: [
          {
            from: [{ namespaceSelector: { matchLabels: { team: 'a' } } }],
            ports: [{ port: 80, endPort: 90 }],
          },
        ],
      }).problems,
    ).toEqual([]);
  });
});
