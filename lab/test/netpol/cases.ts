// The conformance cases: the upstream NetworkPolicy e2e cases, each over IPv4 and IPv6, plus
// cases where the two families must differ. Policies are written as users write them.
import { FAMILIES } from '@dyad/netaddr';
import type { Family } from '@dyad/netaddr';
import type { Case, CaseContext, PodRef, Probe, Step, Truth } from './model.ts';
import { TCP80, TCP81, UDP80, UDP81, is, refOf } from './model.ts';

type Obj = Record<string, unknown>;

function policy(ns: string, name: string, spec: Obj): Obj {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name, namespace: ns },
    spec,
  };
}

const podSel = (pod: string): Obj => ({ matchLabels: { pod } });
const nsSel = (ns: string): Obj => ({ matchLabels: { ns } });
const ALL: Truth = () => true;

const onlyX = is('x');
const xa = is('x', 'a');

function step(
  what: string,
  policies: (ctx: CaseContext) => readonly Obj[],
  truth: (ctx: CaseContext) => Truth,
  probes: readonly Probe[] = [TCP80],
): Step {
  return { what, policies, probes, truth };
}

const fixed = (t: Truth) => (): Truth => t;
const single = (name: string, s: Step): Case => ({ name, steps: [s] });

/** The /32 or /128 of a pod's address of a family. */
function hostPrefix(ctx: CaseContext, p: PodRef, family: Family): string {
  const a = ctx.addresses.get(refOf(p))?.[family];
  if (a === undefined) throw new Error(`${refOf(p)} has no ${family} address`);
  return `${a}/${family === 'IPv4' ? 32 : 128}`;
}

function pool(ctx: CaseContext, family: Family): string {
  const p = ctx.pools[family];
  if (p === undefined) throw new Error(`the lab has no ${family} pool`);
  return p;
}

export const CASES: readonly Case[] = [
  single(
    'default deny ingress',
    step(
      'x denies all ingress',
      () => [policy('x', 'deny-ingress', { podSelector: {}, policyTypes: ['Ingress'] })],
      fixed((_f, t) => !onlyX(t)),
    ),
  ),
  single(
    'default deny egress',
    step(
      'x denies all egress',
      () => [policy('x', 'deny-egress', { podSelector: {}, policyTypes: ['Egress'] })],
      // connections into x still complete: their replies leave x as replies, not new egress
      fixed((f) => !onlyX(f)),
      [TCP80, UDP80],
    ),
  ),
  single(
    'default deny all',
    step(
      'x denies ingress and egress',
      () => [policy('x', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })],
      fixed((f, t) => !onlyX(f) && !onlyX(t)),
    ),
  ),
  single(
    'allow all ingress beside a default deny',
    step(
      'x denies ingress, and allows all ingress',
      () => [
        policy('x', 'deny-ingress', { podSelector: {}, policyTypes: ['Ingress'] }),
        policy('x', 'allow-all', { podSelector: {}, ingress: [{}] }),
      ],
      fixed(ALL),
    ),
  ),
  single(
    'pod selector',
    step(
      'x/a admits x/b only',
      () => [
        policy('x', 'a-from-b', {
          podSelector: podSel('a'),
          ingress: [{ from: [{ podSelector: podSel('b') }] }],
        }),
      ],
      fixed((f, t) => !xa(t) || is('x', 'b')(f)),
    ),
  ),
  single(
    'namespace selector',
    step(
      'x/a admits namespace y',
      () => [
        policy('x', 'a-from-y', {
          podSelector: podSel('a'),
          ingress: [{ from: [{ namespaceSelector: nsSel('y') }] }],
        }),
      ],
      fixed((f, t) => !xa(t) || f.ns === 'y'),
    ),
  ),
  single(
    'namespace and pod selector in one peer (AND)',
    step(
      'x/a admits y/b only',
      () => [
        policy('x', 'a-from-yb', {
          podSelector: podSel('a'),
          ingress: [{ from: [{ namespaceSelector: nsSel('y'), podSelector: podSel('b') }] }],
        }),
      ],
      fixed((f, t) => !xa(t) || (f.ns === 'y' && f.pod === 'b')),
    ),
  ),
  single(
    'namespace and pod selector as two peers (OR)',
    step(
      'x/a admits namespace y and pods b of x',
      () => [
        policy('x', 'a-from-y-or-b', {
          podSelector: podSel('a'),
          ingress: [{ from: [{ namespaceSelector: nsSel('y') }, { podSelector: podSel('b') }] }],
        }),
      ],
      fixed((f, t) => !xa(t) || f.ns === 'y' || (f.ns === 'x' && f.pod === 'b')),
    ),
  ),
  single(
    'matchExpressions',
    step(
      'x/a admits namespaces NotIn [x, y] and pods In [b] of x',
      () => [
        policy('x', 'a-expressions', {
          podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['a'] }] },
          ingress: [
            {
              from: [
                {
                  namespaceSelector: {
                    matchExpressions: [{ key: 'ns', operator: 'NotIn', values: ['x', 'y'] }],
                  },
                },
                {
                  podSelector: {
                    matchExpressions: [{ key: 'pod', operator: 'In', values: ['b'] }],
                  },
                },
              ],
            },
          ],
        }),
      ],
      fixed((f, t) => !xa(t) || f.ns === 'z' || (f.ns === 'x' && f.pod === 'b')),
    ),
  ),
  single(
    'ports by number',
    step(
      'x/a admits everyone on TCP 81 only',
      () => [
        policy('x', 'a-81', {
          podSelector: podSel('a'),
          ingress: [{ ports: [{ port: 81, protocol: 'TCP' }] }],
        }),
      ],
      fixed((_f, t, _fam, p) => !xa(t) || (p.protocol === 'TCP' && p.port === 81)),
      [TCP80, TCP81, UDP81],
    ),
  ),
  single(
    'named ports',
    step(
      'x/a admits namespace y on serve-81-tcp and serve-80-udp',
      () => [
        policy('x', 'a-named', {
          podSelector: podSel('a'),
          ingress: [
            {
              from: [{ namespaceSelector: nsSel('y') }],
              ports: [
                { port: 'serve-81-tcp', protocol: 'TCP' },
                { port: 'serve-80-udp', protocol: 'UDP' },
              ],
            },
          ],
        }),
      ],
      fixed(
        (f, t, _fam, p) =>
          !xa(t) ||
          (f.ns === 'y' &&
            ((p.protocol === 'TCP' && p.port === 81) || (p.protocol === 'UDP' && p.port === 80))),
      ),
      [TCP80, TCP81, UDP80, UDP81],
    ),
  ),
  single(
    'port range with endPort',
    step(
      'x/a admits TCP 81..90 and UDP 70..80',
      () => [
        policy('x', 'a-ranges', {
          podSelector: podSel('a'),
          ingress: [
            {
              ports: [
                { port: 81, endPort: 90, protocol: 'TCP' },
                { port: 70, endPort: 80, protocol: 'UDP' },
              ],
            },
          ],
        }),
      ],
      fixed(
        (_f, t, _fam, p) =>
          !xa(t) ||
          (p.protocol === 'TCP' && p.port === 81) ||
          (p.protocol === 'UDP' && p.port === 80),
      ),
      [TCP80, TCP81, UDP80, UDP81],
    ),
  ),
  single(
    'egress to pods',
    step(
      'x/a may reach pods b of namespace y only',
      () => [
        policy('x', 'a-to-yb', {
          podSelector: podSel('a'),
          policyTypes: ['Egress'],
          egress: [{ to: [{ namespaceSelector: nsSel('y'), podSelector: podSel('b') }] }],
        }),
      ],
      fixed((f, t) => !xa(f) || (t.ns === 'y' && t.pod === 'b')),
      [TCP80, UDP80],
    ),
  ),
  single(
    'egress to an ipBlock with except, per family',
    step(
      'x/a may reach the pod pool of each family except z/c',
      (ctx) => [
        policy('x', 'a-to-pool', {
          podSelector: podSel('a'),
          policyTypes: ['Egress'],
          egress: [
            {
              to: FAMILIES.filter((f) => ctx.pools[f] !== undefined).map((f) => ({
                ipBlock: {
                  cidr: pool(ctx, f),
                  except: [hostPrefix(ctx, { ns: 'z', pod: 'c' }, f)],
                },
              })),
            },
          ],
        }),
      ],
      fixed((f, t) => !xa(f) || !(t.ns === 'z' && t.pod === 'c')),
    ),
  ),
  single(
    'ingress from an ipBlock of one family isolates the other family',
    step(
      'x/a admits the IPv4 pod pool only',
      (ctx) => [
        policy('x', 'a-from-v4', {
          podSelector: podSel('a'),
          ingress: [{ from: [{ ipBlock: { cidr: pool(ctx, 'IPv4') } }] }],
        }),
      ],
      fixed((_f, t, family) => !xa(t) || family === 'IPv4'),
      [TCP80, UDP80],
    ),
  ),
  single(
    'egress to one pod by its IPv6 address only',
    step(
      'x/a may reach y/b over IPv6 and nothing over IPv4',
      (ctx) => [
        policy('x', 'a-to-yb-v6', {
          podSelector: podSel('a'),
          policyTypes: ['Egress'],
          egress: [{ to: [{ ipBlock: { cidr: hostPrefix(ctx, { ns: 'y', pod: 'b' }, 'IPv6') } }] }],
        }),
      ],
      fixed((f, t, family) => !xa(f) || (family === 'IPv6' && t.ns === 'y' && t.pod === 'b')),
    ),
  ),
  single(
    'several policies unite',
    step(
      'x/a admits namespace y (one policy) and namespace z on TCP 81 (another)',
      () => [
        policy('x', 'a-from-y', {
          podSelector: podSel('a'),
          ingress: [{ from: [{ namespaceSelector: nsSel('y') }] }],
        }),
        policy('x', 'a-from-z-81', {
          podSelector: podSel('a'),
          ingress: [{ from: [{ namespaceSelector: nsSel('z') }], ports: [{ port: 81 }] }],
        }),
      ],
      fixed((f, t, _fam, p) => !xa(t) || f.ns === 'y' || (f.ns === 'z' && p.port === 81)),
      [TCP80, TCP81],
    ),
  ),
  {
    name: 'a policy updated, then deleted',
    steps: [
      step(
        'x/a admits namespace y',
        () => [
          policy('x', 'a-moving', {
            podSelector: podSel('a'),
            ingress: [{ from: [{ namespaceSelector: nsSel('y') }] }],
          }),
        ],
        fixed((f, t) => !xa(t) || f.ns === 'y'),
      ),
      step(
        'the same policy now admits namespace z',
        () => [
          policy('x', 'a-moving', {
            podSelector: podSel('a'),
            ingress: [{ from: [{ namespaceSelector: nsSel('z') }] }],
          }),
        ],
        fixed((f, t) => !xa(t) || f.ns === 'z'),
      ),
      step('the policy deleted', () => [], fixed(ALL)),
    ],
  },
];
