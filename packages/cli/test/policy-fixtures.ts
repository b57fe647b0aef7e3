import type {
  DirectionPolicyValue,
  IdentityEvent,
  PayloadOf,
  PodIdentityEvent,
  PodPolicyDesiredV2,
  PolicyProblemValue,
  PolicyStatusEvent,
} from '@dyad/contracts';

type Upsert<T> = Extract<T, { op: 'upsert' }>;

export function identity(n: number, labels: string[]): PayloadOf<typeof IdentityEvent> {
  return { op: 'upsert', identity: n, labels };
}

export function podIdentity(
  namespace: string,
  name: string,
  n: number,
  node?: string,
): Upsert<PayloadOf<typeof PodIdentityEvent>> {
  return {
    op: 'upsert',
    namespace,
    name,
    uid: `uid-${namespace}-${name}`,
    identity: n,
    ...(node !== undefined ? { node } : {}),
  };
}

const open: DirectionPolicyValue = { enforce: false, peers: [], cidrs: { IPv4: [], IPv6: [] } };

export function compiled(
  over: Partial<{
    ingress: DirectionPolicyValue;
    egress: DirectionPolicyValue;
    policies: string[];
  }>,
  namespace = 'x',
  name = 'a',
): Upsert<PayloadOf<typeof PodPolicyDesiredV2>> {
  return {
    op: 'upsert',
    namespace,
    name,
    uid: `uid-${namespace}-${name}`,
    identity: 0x10001,
    policies: over.policies ?? [],
    ingress: over.ingress ?? open,
    egress: over.egress ?? open,
  };
}

export function status(
  namespace: string,
  name: string,
  problems: PolicyProblemValue[],
): Upsert<PayloadOf<typeof PolicyStatusEvent>> {
  return {
    op: 'upsert',
    namespace,
    name,
    uid: `uid-${name}`,
    resourceVersion: '1',
    problems,
    accepted: {
      metadata: { name, namespace, uid: `uid-${name}`, resourceVersion: '1', labels: {} },
      spec: {
        podSelector: { matchLabels: {}, matchExpressions: [] },
        policyTypes: ['Ingress'],
        ingress: [],
        egress: [],
      },
    },
  };
}
