// The compiler against the upstream NetworkPolicy e2e cases (test/e2e/network/netpol), over the
// same model: namespaces x, y, z, pods a, b, c. Every case is compiled twice, from scratch and by
// the incremental engine, and the two must agree; then the reachability matrix that the compiled
// messages give (evaluated as the datapath will) is compared with upstream's expectation.
import { PodPolicyDesiredV2, ReservedIdentity } from '@dyad/contracts';
import { describe, expect, it } from 'vitest';
import { compileAll } from '../src/compile.ts';
import { directionAllows } from '../src/evaluate.ts';
import { PolicyEngine } from '../src/engine.ts';
import type { CompiledPod, PodInput } from '../src/model.ts';
import type { Protocol } from '../src/ports.ts';
import type { PolicySpec } from '../src/spec.ts';
import { FAMILIES } from '@dyad/netaddr';
import type { Family } from '@dyad/netaddr';
import {
  IdentityTable,
  expected,
  makePod,
  makePolicy,
  matrix,
  reaches,
  upstreamPods,
} from './world.ts';

const opts = { allowHost: true };

function compileBoth(
  pods: readonly PodInput[],
  policies: readonly PolicySpec[],
): Map<string, CompiledPod> {
  const ref = compileAll(pods, policies, opts);
  const engine = new PolicyEngine(opts);
  for (const p of policies) engine.upsertPolicy(p);
  for (const p of pods) engine.upsertPod(p);
  engine.drain();
  expect(engine.published()).toEqual(ref);
  // Every message is one the contract accepts as it is.
  for (const c of ref.values()) {
    expect(PodPolicyDesiredV2.schema.parse({ op: 'upsert', ...c.body })).toEqual({
      op: 'upsert',
      ...c.body,
    });
  }
  return ref;
}

interface Probe {
  readonly protocol: Protocol;
  readonly port: number;
  readonly family: Family;
  /** Which ordered pairs ("x/a", "y/b") upstream expects blocked. */
  readonly blocked: (from: string, to: string) => boolean;
}

/** The same expectation on TCP 80 over each family. */
function tcp80(blocked: Probe['blocked'], families = FAMILIES): Probe[] {
  return families.map((family) => ({ protocol: 'TCP', port: 80, family, blocked }));
}

function check(policies: readonly PolicySpec[], probes: readonly Probe[]): void {
  const ids = new IdentityTable();
  const pods = upstreamPods(ids);
  const compiled = compileBoth(pods, policies);
  for (const p of probes) {
    // A pod reaches itself over loopback whatever the policy, as upstream's model assumes.
    const got = matrix(
      pods,
      (f, t) => f === t || reaches(compiled, f, t, p.protocol, p.port, p.family),
    );
    const want = expected(pods, (f, t) => f !== t && p.blocked(f, t));
    expect(got, `${p.protocol} ${p.port} ${p.family}`).toBe(want);
  }
}

const inNs = (ns: string) => (pod: string) => pod.startsWith(`${ns}/`);
const none = (): boolean => false;

describe('default policies', () => {
  it('default-deny-ingress isolates every pod of the namespace for ingress only', () => {
    check(
      [makePolicy('x', 'deny', { podSelector: {}, policyTypes: ['Ingress'] })],
      tcp80((_, t) => inNs('x')(t)),
    );
  });

  it('default-deny-egress isolates every pod of the namespace for egress only', () => {
    check(
      [makePolicy('x', 'deny', { podSelector: {}, policyTypes: ['Egress'] })],
      tcp80((f) => inNs('x')(f)),
    );
  });

  it('default-deny-all isolates both directions', () => {
    check(
      [makePolicy('x', 'deny', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })],
      tcp80((f, t) => inNs('x')(f) || inNs('x')(t)),
    );
  });

  it('allow-all ingress (an empty rule) reopens what a default deny closed: policies unite', () => {
    check(
      [
        makePolicy('x', 'deny', { podSelector: {}, policyTypes: ['Ingress'] }),
        makePolicy('x', 'allow-all', { podSelector: {}, ingress: [{}] }),
      ],
      tcp80(none),
    );
  });

  it('no policyTypes: Ingress always, Egress only with egress rules (the apiserver default)', () => {
    // Egress rules only: both directions isolated, and the missing ingress rules allow nothing.
    check(
      [
        makePolicy('x', 'p', {
          podSelector: { matchLabels: { pod: 'a' } },
          egress: [{ to: [{ podSelector: {} }] }],
        }),
      ],
      tcp80((f, t) => t === 'x/a' || (f === 'x/a' && !inNs('x')(t))),
    );
  });

  it('policyTypes Egress only: ingress rules written in it are not enforced', () => {
    check(
      [
        makePolicy('x', 'p', {
          podSelector: { matchLabels: { pod: 'a' } },
          policyTypes: ['Egress'],
          ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }],
          egress: [{ to: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }] }],
        }),
      ],
      tcp80((f, t) => f === 'x/a' && !inNs('y')(t)),
    );
  });
});

describe('selectors', () => {
  const onA = { matchLabels: { pod: 'a' } };

  it('podSelector peer: only pods of the policy namespace', () => {
    check(
      [
        makePolicy('x', 'p', {
          podSelector: onA,
          ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }],
        }),
      ],
      tcp80((f, t) => t === 'x/a' && f !== 'x/b'),
    );
  });

  it('namespaceSelector peer: every pod of the selected namespaces', () => {
    check(
      [
        makePolicy('x', 'p', {
          podSelector: onA,
          ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }] }],
        }),
      ],
      tcp80((f, t) => t === 'x/a' && !inNs('y')(f)),
    );
  });

  it('podSelector and namespaceSelector in one peer: both must hold (AND)', () => {
    check(
      [
        makePolicy('x', 'p', {
          podSelector: onA,
          ingress: [
            {
              from: [
                {
                  podSelector: { matchLabels: { pod: 'b' } },
                  namespaceSelector: { matchLabels: { ns: 'y' } },
                },
              ],
            },
          ],
        }),
      ],
      tcp80((f, t) => t === 'x/a' && f !== 'y/b'),
    );
  });

  it('podSelector and namespaceSelector as two peers: either may hold (OR)', () => {
    check(
      [
        makePolicy('x', 'p', {
          podSelector: onA,
          ingress: [
            {
              from: [
                { podSelector: { matchLabels: { pod: 'b' } } },
                { namespaceSelector: { matchLabels: { ns: 'y' } } },
              ],
            },
          ],
        }),
      ],
      tcp80((f, t) => t === 'x/a' && f !== 'x/b' && !inNs('y')(f)),
    );
  });

  it('matchExpressions In / NotIn / Exists / DoesNotExist', () => {
    check(
      [
        makePolicy('x', 'in', {
          podSelector: onA,
          ingress: [
            {
              from: [
                {
                  podSelector: {
                    matchExpressions: [{ key: 'pod', operator: 'In', values: ['b'] }],
                  },
                },
              ],
            },
          ],
        }),
        makePolicy('x', 'notin', {
          podSelector: onA,
          ingress: [
            {
              from: [
                {
                  namespaceSelector: {
                    matchExpressions: [{ key: 'ns', operator: 'NotIn', values: ['x', 'y'] }],
                  },
                  podSelector: { matchExpressions: [{ key: 'pod', operator: 'Exists' }] },
                },
              ],
            },
          ],
        }),
      ],
      tcp80((f, t) => t === 'x/a' && f !== 'x/b' && !inNs('z')(f)),
    );
    // NotIn holds where the key is absent: no pod has a "role", so all of x may reach x/a.
    check(
      [
        makePolicy('x', 'notin-absent', {
          podSelector: onA,
          ingress: [
            {
              from: [
                {
                  podSelector: {
                    matchExpressions: [{ key: 'role', operator: 'NotIn', values: ['db'] }],
                  },
                },
              ],
            },
          ],
        }),
      ],
      tcp80((f, t) => t === 'x/a' && !inNs('x')(f)),
    );
    // DoesNotExist on a label every pod has selects nobody: x/a is isolated and admits no one.
    check(
      [
        makePolicy('x', 'dne', {
          podSelector: onA,
          ingress: [
            {
              from: [
                { podSelector: { matchExpressions: [{ key: 'pod', operator: 'DoesNotExist' }] } },
              ],
            },
          ],
        }),
      ],
      tcp80((_, t) => t === 'x/a'),
    );
  });

  it('empty selectors: {} podSelector peer is the namespace, {} namespaceSelector is every pod, not the world', () => {
    check(
      [makePolicy('x', 'p', { podSelector: onA, ingress: [{ from: [{ podSelector: {} }] }] })],
      tcp80((f, t) => t === 'x/a' && !inNs('x')(f)),
    );
    check(
      [
        makePolicy('x', 'p', {
          podSelector: onA,
          ingress: [{ from: [{ namespaceSelector: {} }] }],
        }),
      ],
      tcp80(none),
    );
    const ids = new IdentityTable();
    const pods = upstreamPods(ids);
    const c = compileBoth(pods, [
      makePolicy('x', 'p', { podSelector: onA, ingress: [{ from: [{ namespaceSelector: {} }] }] }),
    ]);
    const ingress = c.get('x/a')?.body.ingress;
    expect(
      ingress &&
        directionAllows(
          ingress,
          { identity: ReservedIdentity.world, address: '198.19.200.1' },
          'TCP',
          80,
        ),
    ).toBe(false);
  });
});

describe('ports', () => {
  const fromB = [{ podSelector: { matchLabels: { pod: 'b' } } }];
  const onA = { matchLabels: { pod: 'a' } };
  const onlyXb = (to: string) => (f: string, t: string) => t === to && f !== 'x/b';
  const closed = (to: string) => (_: string, t: string) => t === to;

  it('by number: only that port and protocol', () => {
    const p = makePolicy('x', 'p', {
      podSelector: onA,
      ingress: [{ from: fromB, ports: [{ port: 80 }] }],
    });
    check(
      [p],
      [
        ...tcp80(onlyXb('x/a')),
        { protocol: 'TCP', port: 81, family: 'IPv4', blocked: closed('x/a') },
        { protocol: 'UDP', port: 80, family: 'IPv6', blocked: closed('x/a') },
      ],
    );
  });

  it('a protocol without a port: every port of it', () => {
    const p = makePolicy('x', 'p', {
      podSelector: onA,
      ingress: [{ from: fromB, ports: [{ protocol: 'UDP' }] }],
    });
    check(
      [p],
      [
        { protocol: 'UDP', port: 81, family: 'IPv6', blocked: onlyXb('x/a') },
        { protocol: 'TCP', port: 80, family: 'IPv4', blocked: closed('x/a') },
      ],
    );
  });

  it('by name: the selected pod’s container port of that name and protocol', () => {
    const p = makePolicy('x', 'p', {
      podSelector: onA,
      ingress: [
        {
          from: fromB,
          ports: [{ port: 'serve-81-tcp' }, { protocol: 'UDP', port: 'serve-80-udp' }],
        },
      ],
    });
    check(
      [p],
      [
        { protocol: 'TCP', port: 81, family: 'IPv4', blocked: onlyXb('x/a') },
        { protocol: 'UDP', port: 80, family: 'IPv6', blocked: onlyXb('x/a') },
        { protocol: 'TCP', port: 80, family: 'IPv4', blocked: closed('x/a') },
        { protocol: 'UDP', port: 81, family: 'IPv6', blocked: closed('x/a') },
      ],
    );
  });

  it('a named port resolves per destination pod: pods that number it differently each get their own', () => {
    const ids = new IdentityTable();
    const pods = upstreamPods(ids).map((p) =>
      p.namespace === 'x' && p.name === 'b'
        ? { ...p, ports: [{ name: 'serve-80-tcp', port: 8080, protocol: 'TCP' as const }] }
        : p,
    );
    const c = compileBoth(pods, [
      makePolicy('x', 'p', { podSelector: {}, ingress: [{ ports: [{ port: 'serve-80-tcp' }] }] }),
    ]);
    const rules = (k: string) =>
      c.get(k)?.body.ingress.peers.find((g) => g.identities.includes(0))?.allow;
    expect(rules('x/a')).toEqual([{ protocol: 'TCP', ports: { from: 80, to: 80 } }]);
    expect(rules('x/b')).toEqual([{ protocol: 'TCP', ports: { from: 8080, to: 8080 } }]);
  });

  it('endPort: a range', () => {
    const p = makePolicy('x', 'p', {
      podSelector: onA,
      ingress: [{ from: fromB, ports: [{ port: 80, endPort: 81 }] }],
    });
    check(
      [p],
      [
        ...tcp80(onlyXb('x/a')),
        { protocol: 'TCP', port: 81, family: 'IPv6', blocked: onlyXb('x/a') },
        { protocol: 'UDP', port: 81, family: 'IPv4', blocked: closed('x/a') },
      ],
    );
    const c = compileBoth(upstreamPods(new IdentityTable()), [p]);
    expect(c.get('x/a')?.body.ingress.peers.at(-1)?.allow).toEqual([
      { protocol: 'TCP', ports: { from: 80, to: 81 } },
    ]);
  });

  it('several policies with overlapping pods unite: one allows 80, the other 81', () => {
    const fromY = [{ namespaceSelector: { matchLabels: { ns: 'y' } } }];
    const policies = [
      makePolicy('x', 'p80', {
        podSelector: onA,
        ingress: [{ from: fromY, ports: [{ port: 80 }] }],
      }),
      makePolicy('x', 'p81', {
        podSelector: {},
        ingress: [{ from: fromY, ports: [{ port: 81 }] }],
      }),
    ];
    check(policies, [
      ...tcp80((f, t) => inNs('x')(t) && (t !== 'x/a' || !inNs('y')(f))),
      {
        protocol: 'TCP',
        port: 81,
        family: 'IPv6',
        blocked: (f, t) => inNs('x')(t) && !inNs('y')(f),
      },
    ]);
  });
});

describe('egress', () => {
  const onA = { matchLabels: { pod: 'a' } };

  it('to pods of another namespace on one port', () => {
    check(
      [
        makePolicy('x', 'p', {
          podSelector: onA,
          policyTypes: ['Egress'],
          egress: [
            {
              to: [
                {
                  namespaceSelector: { matchLabels: { ns: 'y' } },
                  podSelector: { matchLabels: { pod: 'b' } },
                },
              ],
              ports: [{ port: 80 }],
            },
          ],
        }),
      ],
      [
        ...tcp80((f, t) => f === 'x/a' && t !== 'y/b'),
        { protocol: 'TCP', port: 81, family: 'IPv4', blocked: (f) => f === 'x/a' },
      ],
    );
  });

  it('a named port resolves per peer pod', () => {
    const ids = new IdentityTable();
    // y/b calls its 81 "serve-80-tcp": egress to "serve-80-tcp" opens 80 of the others and 81 of y/b.
    const pods = upstreamPods(ids).map((p) =>
      p.namespace === 'y' && p.name === 'b'
        ? { ...p, ports: [{ name: 'serve-80-tcp', port: 81, protocol: 'TCP' as const }] }
        : p,
    );
    const c = compileBoth(pods, [
      makePolicy('x', 'p', {
        podSelector: onA,
        policyTypes: ['Egress'],
        egress: [{ to: [{ namespaceSelector: {} }], ports: [{ port: 'serve-80-tcp' }] }],
      }),
    ]);
    const xa = pods.find((p) => p.namespace === 'x' && p.name === 'a') as PodInput;
    const open = (port: number) =>
      pods
        .filter((t) => reaches(c, xa, t, 'TCP', port, 'IPv6'))
        .map((t) => `${t.namespace}/${t.name}`);
    expect(open(80)).toEqual(['x/a', 'x/b', 'x/c', 'y/a', 'y/c', 'z/a', 'z/b', 'z/c']);
    expect(open(81)).toEqual(['y/b']);
  });

  it('to an IPv4 ipBlock with except: that family only, minus the except', () => {
    const except = '198.18.2.11/32'; // y/b
    const p = makePolicy('x', 'p', {
      podSelector: onA,
      policyTypes: ['Egress'],
      egress: [{ to: [{ ipBlock: { cidr: '198.18.0.0/15', except: [except] } }] }],
    });
    check(
      [p],
      [
        ...tcp80((f, t) => f === 'x/a' && t === 'y/b', ['IPv4']),
        // An IPv4 block never opens IPv6: x/a is isolated for egress and reaches nothing there.
        ...tcp80((f) => f === 'x/a', ['IPv6']),
      ],
    );
    const c = compileBoth(upstreamPods(new IdentityTable()), [p]);
    expect(c.get('x/a')?.body.egress.cidrs).toEqual({
      IPv4: [
        { prefix: '198.18.0.0/15', allow: [{}] },
        { prefix: '198.18.2.11/32', allow: [] },
      ],
      IPv6: [],
    });
  });

  it('to an IPv6 ipBlock with except, and an IPv4 one beside it: each family by its own', () => {
    check(
      [
        makePolicy('x', 'p', {
          podSelector: onA,
          policyTypes: ['Egress'],
          egress: [
            {
              to: [
                { ipBlock: { cidr: 'fd00:18::/32', except: ['fd00:18:3::/48'] } },
                { ipBlock: { cidr: '198.18.3.0/24' } },
              ],
            },
          ],
        }),
      ],
      [
        ...tcp80((f, t) => f === 'x/a' && inNs('z')(t), ['IPv6']),
        ...tcp80((f, t) => f === 'x/a' && !inNs('z')(t), ['IPv4']),
      ],
    );
  });

  it('to an ipBlock by named port: the pods in the block that have the port, by address', () => {
    const ids = new IdentityTable();
    const pods = upstreamPods(ids).map((p) =>
      p.namespace === 'y' && p.name === 'c' ? { ...p, ports: [] } : p,
    );
    const c = compileBoth(pods, [
      makePolicy('x', 'p', {
        podSelector: onA,
        policyTypes: ['Egress'],
        egress: [
          {
            to: [{ ipBlock: { cidr: '198.18.2.0/24', except: ['198.18.2.10/32'] } }],
            ports: [{ port: 'serve-81-tcp' }],
          },
        ],
      }),
    ]);
    expect(c.get('x/a')?.body.egress.cidrs.IPv4).toEqual([
      { prefix: '198.18.2.11/32', allow: [{ protocol: 'TCP', ports: { from: 81, to: 81 } }] },
    ]);
  });

  it('ipBlock matches pod addresses too, and ingress from a block admits only that family', () => {
    check(
      [
        makePolicy('x', 'p', {
          podSelector: onA,
          ingress: [{ from: [{ ipBlock: { cidr: '198.18.2.0/24' } }] }],
        }),
      ],
      [
        ...tcp80((f, t) => t === 'x/a' && !inNs('y')(f), ['IPv4']),
        ...tcp80((_, t) => t === 'x/a', ['IPv6']),
      ],
    );
  });
});

describe('reserved peers and the output form', () => {
  it('an enforcing pod admits its node (host) but not the world; a pod no policy selects is open and still published', () => {
    const ids = new IdentityTable();
    const pods = upstreamPods(ids);
    const c = compileBoth(pods, [
      makePolicy('x', 'deny', {
        podSelector: { matchLabels: { pod: 'a' } },
        policyTypes: ['Ingress', 'Egress'],
      }),
    ]);
    const xa = c.get('x/a')?.body;
    expect(xa?.ingress.peers).toEqual([{ identities: [ReservedIdentity.host], allow: [{}] }]);
    expect(xa?.egress.peers).toEqual([{ identities: [ReservedIdentity.host], allow: [{}] }]);
    expect(xa?.policies).toEqual(['deny']);
    expect(c.get('y/b')?.body).toMatchObject({
      policies: [],
      ingress: { enforce: false },
      egress: { enforce: false },
    });
    expect(c.size).toBe(9);
    // Without the host exception nothing at all is allowed.
    const strict = compileAll(
      pods,
      [
        makePolicy('x', 'deny', {
          podSelector: { matchLabels: { pod: 'a' } },
          policyTypes: ['Ingress'],
        }),
      ],
      {
        allowHost: false,
      },
    );
    expect(strict.get('x/a')?.body.ingress.peers).toEqual([]);
  });

  it('peers allowed the same are one group; an unscheduled pod is a peer but has no message', () => {
    const ids = new IdentityTable();
    const pods = [
      ...upstreamPods(ids),
      makePod(ids, 'y', 'pending', { labels: { pod: 'pending', role: 'db' }, node: undefined }),
    ];
    const c = compileBoth(pods, [
      makePolicy('x', 'p', {
        podSelector: { matchLabels: { pod: 'a' } },
        ingress: [
          { from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }], ports: [{ port: 80 }] },
        ],
      }),
    ]);
    const yIds = pods
      .filter((p) => p.namespace === 'y')
      .map((p) => p.identity)
      .sort((a, b) => a - b);
    expect(c.get('x/a')?.body.ingress.peers).toEqual([
      { identities: [ReservedIdentity.host], allow: [{}] },
      { identities: yIds, allow: [{ protocol: 'TCP', ports: { from: 80, to: 80 } }] },
    ]);
    expect(c.has('y/pending')).toBe(false);
  });

  it('pods with equal labels share an identity, so they are one peer', () => {
    const ids = new IdentityTable();
    const a1 = makePod(ids, 'x', 'web-1', { labels: { app: 'web' } });
    const a2 = makePod(ids, 'x', 'web-2', { labels: { app: 'web' } });
    const other = makePod(ids, 'y', 'web-1', { labels: { app: 'web' } });
    expect(a1.identity).toBe(a2.identity);
    // Same pod labels in another namespace: another identity.
    expect(other.identity).not.toBe(a1.identity);
  });
});
