import type {
  PayloadOf,
  IdentityEvent,
  PodIdentityEvent,
  PodPolicyDesiredV2,
  PolicyStatusEvent,
} from '@dyad/contracts';
import { ReservedIdentity } from '@dyad/contracts';
import { FAMILIES } from '@dyad/netaddr';
import type { Family } from '@dyad/netaddr';
import type { DirectionPolicyValue, PolicyPortsValue, PolicyProblemValue } from '@dyad/contracts';
import { formatTable } from '../output.ts';

// What `dyad policy get` and `dyad identity list` show, as pure functions of the policy
// service's published state, so they are tested without a server.

type Identity = PayloadOf<typeof IdentityEvent>;
type PodIdentity = Extract<PayloadOf<typeof PodIdentityEvent>, { op: 'upsert' }>;
type PodPolicy = Extract<PayloadOf<typeof PodPolicyDesiredV2>, { op: 'upsert' }>;
type PolicyStatus = Extract<PayloadOf<typeof PolicyStatusEvent>, { op: 'upsert' }>;

/** The reserved identities by number, named as `dyad identity list` shows them. */
export const RESERVED_NAMES: ReadonlyMap<number, string> = new Map([
  [ReservedIdentity.host, 'reserved:host'],
  [ReservedIdentity.world, 'reserved:world'],
  [ReservedIdentity.cluster, 'reserved:cluster'],
  [ReservedIdentity.remoteNode, 'reserved:remote-node'],
  [ReservedIdentity.unknown, 'reserved:unknown'],
]);

export interface IdentityRow {
  readonly identity: number;
  readonly labels: readonly string[];
  /** Pods that hold it now (reserved identities: none listed). */
  readonly pods: readonly string[];
}

/** Every identity, reserved first, with its labels and the pods that hold it. */
export function identityRows(
  identities: readonly Identity[],
  pods: readonly PodIdentity[],
): IdentityRow[] {
  const holders = new Map<number, string[]>();
  for (const p of pods) {
    const list = holders.get(p.identity) ?? [];
    list.push(`${p.namespace}/${p.name}`);
    holders.set(p.identity, list);
  }
  const reserved = [...RESERVED_NAMES].map(([identity, name]) => ({
    identity,
    labels: [name],
    pods: [],
  }));
  const allocated = [...identities]
    .sort((a, b) => a.identity - b.identity)
    .map((i) => ({
      identity: i.identity,
      labels: i.labels,
      pods: (holders.get(i.identity) ?? []).sort(),
    }));
  return [...reserved, ...allocated];
}

/** `cilium-dbg identity list`'s shape: one label per line under its identity. */
export function renderIdentities(rows: readonly IdentityRow[], wide: boolean): string {
  return formatTable(
    ['ID', 'LABELS', ...(wide ? ['PODS'] : [])],
    rows.flatMap((r) => {
      const lines = Math.max(r.labels.length, wide ? r.pods.length : 0, 1);
      return Array.from({ length: lines }, (_, i) => [
        i === 0 ? String(r.identity) : '',
        r.labels[i] ?? '',
        ...(wide ? [r.pods[i] ?? ''] : []),
      ]);
    }),
  );
}

/** Who a peer identity is, for people: reserved name, or its labels without the namespace label. */
export function describeIdentity(
  identity: number,
  labels: ReadonlyMap<number, readonly string[]>,
): string {
  if (identity === 0) return 'any peer';
  const reserved = RESERVED_NAMES.get(identity);
  if (reserved !== undefined) return `${identity} (${reserved})`;
  const l = labels.get(identity);
  if (l === undefined) return `${identity} (labels unknown)`;
  const shown = l.filter((x) => !x.startsWith('k8s-ns:kubernetes.io/metadata.name='));
  return `${identity} (${shown.join(', ')})`;
}

export function describePorts(allow: readonly PolicyPortsValue[]): string {
  if (allow.length === 0) return 'nothing';
  return allow
    .map((a) => {
      if (a.protocol === undefined) return 'any';
      if (a.ports === undefined) return `${a.protocol}/any`;
      return a.ports.from === a.ports.to
        ? `${a.protocol}/${a.ports.from}`
        : `${a.protocol}/${a.ports.from}-${a.ports.to}`;
    })
    .join(', ');
}

export interface RuleRow {
  /** `both` for identity peers (their pods have addresses of both families). */
  readonly family: Family | 'both';
  readonly peer: string;
  readonly allow: string;
}

export interface DirectionView {
  readonly enforced: boolean;
  readonly rules: readonly RuleRow[];
  /** Families in which this direction admits nothing at all (enforced, no rule of or for it). */
  readonly closedFamilies: readonly Family[];
}

export interface PolicyView {
  readonly namespace: string;
  readonly name: string;
  readonly identity?: number;
  readonly node?: string;
  /** The policy service has published this pod's policy (else nothing is known yet). */
  readonly computed: boolean;
  readonly policies: readonly string[];
  readonly ingress?: DirectionView;
  readonly egress?: DirectionView;
  readonly problems: readonly (PolicyProblemValue & { readonly policy: string })[];
}

function directionView(
  d: DirectionPolicyValue,
  labels: ReadonlyMap<number, readonly string[]>,
): DirectionView {
  const rules: RuleRow[] = [];
  for (const p of d.peers)
    for (const identity of p.identities)
      rules.push({
        family: 'both',
        peer: describeIdentity(identity, labels),
        allow: describePorts(p.allow),
      });
  const closed: Family[] = [];
  for (const family of FAMILIES) {
    for (const c of d.cidrs[family])
      rules.push({
        family,
        peer: c.prefix,
        allow: c.allow.length === 0 ? 'nothing (except)' : describePorts(c.allow),
      });
    const open = d.peers.length > 0 || d.cidrs[family].some((c) => c.allow.length > 0);
    if (d.enforce && !open) closed.push(family);
  }
  return { enforced: d.enforce, rules, closedFamilies: closed };
}

/** One pod's effective policy, from the pod's identity, its compiled policy and the statuses. */
export function policyView(
  namespace: string,
  name: string,
  pod: PodIdentity | undefined,
  compiled: PodPolicy | undefined,
  statuses: ReadonlyMap<string, PolicyStatus>,
  identities: readonly Identity[],
): PolicyView {
  const labels = new Map(identities.map((i) => [i.identity, i.labels] as const));
  const policies = compiled?.policies ?? [];
  const problems = policies.flatMap((p) =>
    (statuses.get(`${namespace}/${p}`)?.problems ?? []).map((x) => ({ policy: p, ...x })),
  );
  return {
    namespace,
    name,
    ...(pod !== undefined ? { identity: pod.identity } : {}),
    ...(pod?.node !== undefined ? { node: pod.node } : {}),
    computed: compiled !== undefined,
    policies,
    ...(compiled !== undefined
      ? {
          ingress: directionView(compiled.ingress, labels),
          egress: directionView(compiled.egress, labels),
        }
      : {}),
    problems,
  };
}

function renderDirection(title: string, d: DirectionView | undefined): string {
  if (d === undefined) return `${title}: not computed yet\n`;
  if (!d.enforced)
    return `${title}: open (no NetworkPolicy selects the pod for ${title.toLowerCase()})\n`;
  const closed =
    d.closedFamilies.length === 0 ? '' : `; nothing admitted over ${d.closedFamilies.join(' or ')}`;
  const head = `${title}: default deny, ${d.rules.length} rule(s)${closed}\n`;
  if (d.rules.length === 0) return head;
  return (
    head +
    formatTable(
      ['FAMILY', 'PEER', 'ALLOWS'],
      d.rules.map((r) => [r.family, r.peer, r.allow]),
    )
  );
}

export function renderPolicy(v: PolicyView): string {
  const lines = [
    `Pod:       ${v.namespace}/${v.name}`,
    `Identity:  ${v.identity ?? 'none yet'}`,
    `Node:      ${v.node ?? 'not scheduled'}`,
    `Selected by: ${v.policies.length === 0 ? 'no NetworkPolicy' : v.policies.join(', ')}`,
  ];
  let out = `${lines.join('\n')}\n\n`;
  if (!v.computed) return `${out}The policy service has published no policy for this pod yet.\n`;
  out += renderDirection('Ingress', v.ingress) + '\n' + renderDirection('Egress', v.egress);
  if (v.problems.length > 0) {
    out += '\nNot enforced as written:\n';
    out += formatTable(
      ['POLICY', 'WHERE', 'CODE', 'WHAT DYAD DOES'],
      v.problems.map((p) => [p.policy, p.path, p.code, p.message]),
    );
  }
  return out;
}
