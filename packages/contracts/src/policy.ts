import { z } from 'zod';
import { NODE_DESIRED_STREAM, NODE_DESIRED_SUBJECT_ROOT } from './agent.ts';
import { defineMessage } from './contract.ts';
import { Cidr4, Cidr6 } from './family.ts';
import { NetworkPolicy } from './k8s.ts';
import type { KvBucketSpec, StreamSpec } from './streams.ts';
import { encodeToken } from './subjects.ts';

/**
 * The policy service (`services/policy`): the identity authority and the NetworkPolicy compiler.
 *
 * Identities (Cilium's model): one number per distinct set of security-relevant labels, allocated
 * in the KV bucket `DYAD_POLICY_IDENTITIES` with compare-and-set creates, so replicas never give
 * one label set two numbers nor one number two label sets, and numbers survive every restart.
 * The service publishes what readers need on stream `DYAD_POLICY` (last value per subject):
 * identity → labels, pod → identity, and each NetworkPolicy's status (what Dyad could not
 * enforce as written). Readers use the stream, never the bucket: the bucket is the allocator's.
 *
 * Per node, the compiled policy of each pod goes to that node's own subject
 * (`dyad.node.v1.<node>.policy.<namespace>.<name>`, stream `DYAD_NODE`) as
 * `io.dyad.node.policy.v2`, the only pod policy message (v1, rules without ipBlocks, is gone);
 * the node's agent reads it with `nodePolicyFilter(node)`.
 */

export const POLICY_SUBJECT_ROOT = 'dyad.policy.v1';
export const POLICY_STREAM = 'DYAD_POLICY';
export const POLICY_IDENTITY_BUCKET = 'DYAD_POLICY_IDENTITIES';

/** Pod identities are at or above ReservedIdentity.firstPod and at most this (24 bits, as Cilium's cluster-local ones). */
export const MAX_POD_IDENTITY = 0xff_ffff;

/**
 * Identity labels are `<source>:<key>=<value>` strings, sorted by code unit; the source is the
 * text before the first ':' (a Kubernetes label key never holds ':'), so a pod label can never
 * pass for a namespace's:
 *
 * - `k8s:<key>=<value>`: a label of the pod;
 * - `k8s-ns:<key>=<value>`: a label of the pod's namespace (`kubernetes.io/metadata.name` is
 *   always among them: the apiserver sets it, and the policy service adds it if missing);
 * - `dyad:namespace=<name>`: the pod's namespace.
 */
export const IdentityLabelSource = {
  pod: 'k8s',
  namespaceLabel: 'k8s-ns',
  dyad: 'dyad',
} as const;
export type IdentityLabelSource = (typeof IdentityLabelSource)[keyof typeof IdentityLabelSource];

/** The key of the `dyad:` label that names the namespace. */
export const IDENTITY_NAMESPACE_KEY = 'namespace';

const Identity = z.number().int().min(0).max(0xffffffff);
const PodIdentity = z.number().int().min(0x10000).max(MAX_POD_IDENTITY);
const Name = z.string().min(1);

/** `dyad.policy.v1.identity.<identity>`. */
export function policyIdentitySubject(identity: number): string {
  return `${POLICY_SUBJECT_ROOT}.identity.${identity}`;
}

/** `dyad.policy.v1.pod.<namespace>.<name>`. */
export function policyPodSubject(namespace: string, name: string): string {
  return `${POLICY_SUBJECT_ROOT}.pod.${encodeToken(namespace)}.${encodeToken(name)}`;
}

/** `dyad.policy.v1.status.<namespace>.<name>`: one NetworkPolicy's status. */
export function policyStatusSubject(namespace: string, name: string): string {
  return `${POLICY_SUBJECT_ROOT}.status.${encodeToken(namespace)}.${encodeToken(name)}`;
}

/** Filters of the DYAD_POLICY stream by kind. */
export const PolicyFilter = {
  identities: `${POLICY_SUBJECT_ROOT}.identity.>`,
  pods: `${POLICY_SUBJECT_ROOT}.pod.>`,
  statuses: `${POLICY_SUBJECT_ROOT}.status.>`,
} as const;

/** Every pod's compiled policy on one node: `dyad.node.v1.<node>.policy.>`. */
export function nodePolicyFilter(node: string): string {
  return `${NODE_DESIRED_SUBJECT_ROOT}.${encodeToken(node)}.policy.>`;
}

/** Every pod's compiled policy on every node: `dyad.node.v1.*.policy.>`. */
export const ALL_NODES_POLICY_FILTER = `${NODE_DESIRED_SUBJECT_ROOT}.*.policy.>`;

export const IdentityEvent = defineMessage({
  type: 'io.dyad.policy.identity.v1',
  version: 1,
  schema: z.object({
    op: z.enum(['upsert', 'delete']),
    identity: PodIdentity,
    /** Sorted; see IdentityLabelSource. On delete, the labels it had. */
    labels: z.array(z.string().min(3)),
  }),
  description:
    'A security identity and its labels (`k8s:` pod labels, `k8s-ns:` namespace labels, `dyad:namespace=`), as the policy service allocated it; a delete once no pod has used it for the grace period. Last value per identity.',
  subjectPattern: `${POLICY_SUBJECT_ROOT}.identity.{identity}`,
  stream: POLICY_STREAM,
});

export const PodIdentityEvent = defineMessage({
  type: 'io.dyad.policy.pod-identity.v1',
  version: 1,
  schema: z.discriminatedUnion('op', [
    z.object({
      op: z.literal('upsert'),
      namespace: Name,
      name: Name,
      uid: Name,
      identity: PodIdentity,
      /** Absent while the pod is not scheduled. */
      node: Name.optional(),
    }),
    z.object({ op: z.literal('delete'), namespace: Name, name: Name }),
  ]),
  description:
    "A pod's security identity (the one the router puts in every node's ipcache for its addresses); delete when the pod is gone, host-network, or finished. Last value per pod.",
  subjectPattern: `${POLICY_SUBJECT_ROOT}.pod.{namespace}.{name}`,
  stream: POLICY_STREAM,
});

/** Why a NetworkPolicy is not enforced exactly as written; each says what Dyad does instead. */
export const PolicyProblemCode = {
  /** `endPort` with a named port (the apiserver refuses it): the named port alone is allowed. */
  namedPortWithEndPort: 'named-port-with-end-port',
  /** `endPort` without a port, or below it: that port entry allows nothing. */
  badPortRange: 'bad-port-range',
  /** A port outside 1..65535: that port entry allows nothing. */
  portOutOfRange: 'port-out-of-range',
  /** A peer with `ipBlock` and a selector, or with nothing at all: that peer matches nothing. */
  badPeer: 'bad-peer',
  /** In/NotIn without values, Exists/DoesNotExist with values: read literally (In [] matches nothing, NotIn [] everything, values of Exists ignored). */
  badSelector: 'bad-selector',
  /** An `except` that is not inside its `cidr` (or of the other family): it excludes nothing. */
  exceptOutsideCidr: 'except-outside-cidr',
  /**
   * A rule the datapath cannot match: that traffic is dropped, never let through. Nothing is
   * reported with it today (SCTP ports were, until the datapath parsed them); statuses stored
   * with it still decode.
   */
  datapathUnsupported: 'datapath-unsupported',
  /** The newest version on NATS did not decode (it was dead-lettered): the last one accepted stays enforced. */
  updateRefused: 'update-refused',
} as const;
export type PolicyProblemCode = (typeof PolicyProblemCode)[keyof typeof PolicyProblemCode];

export const PolicyProblem = z.object({
  code: z.enum([
    PolicyProblemCode.namedPortWithEndPort,
    PolicyProblemCode.badPortRange,
    PolicyProblemCode.portOutOfRange,
    PolicyProblemCode.badPeer,
    PolicyProblemCode.badSelector,
    PolicyProblemCode.exceptOutsideCidr,
    PolicyProblemCode.datapathUnsupported,
    PolicyProblemCode.updateRefused,
  ]),
  /** Where in the object, e.g. `spec.ingress[0].ports[1]`. */
  path: z.string(),
  /** What is wrong and what Dyad enforces instead, for a person. */
  message: z.string(),
});

export const PolicyStatusEvent = defineMessage({
  type: 'io.dyad.policy.status.v1',
  version: 1,
  schema: z.discriminatedUnion('op', [
    z.object({
      op: z.literal('upsert'),
      namespace: Name,
      name: Name,
      uid: Name,
      resourceVersion: Name,
      /** Empty: enforced exactly as written. */
      problems: z.array(PolicyProblem),
      /**
       * The object enforced, as last accepted from DYAD_K8S: a restarted policy service whose
       * input's newest value does not decode enforces this one rather than none.
       */
      accepted: NetworkPolicy,
    }),
    z.object({ op: z.literal('delete'), namespace: Name, name: Name }),
  ]),
  description:
    'What the policy service made of one NetworkPolicy: the object it enforces, and the parts Dyad does not enforce exactly as written (each with what it does instead; empty when none). Published when either changes; last value per policy, for `dyad policy get`.',
  subjectPattern: `${POLICY_SUBJECT_ROOT}.status.{namespace}.{name}`,
  stream: POLICY_STREAM,
});

const Protocol = z.enum(['TCP', 'UDP', 'SCTP']);

/** What is allowed to or from a peer: a protocol and a port range, or everything. */
export const PolicyPorts = z
  .object({
    /** Absent: every protocol, every port (ICMP included). */
    protocol: Protocol.optional(),
    /** Inclusive; absent: every port of the protocol. */
    ports: z
      .object({ from: z.number().int().min(0).max(65535), to: z.number().int().min(0).max(65535) })
      .refine((r) => r.from <= r.to, { message: 'from must not exceed to' })
      .optional(),
  })
  .refine((p) => p.protocol !== undefined || p.ports === undefined, {
    message: 'ports need a protocol',
  });

/** Peers by identity (0: any peer at all) and what each of them may do. */
export const IdentityAllow = z.object({
  /** Sorted; every identity here has the same `allow`. */
  identities: z.array(Identity).min(1),
  allow: z.array(PolicyPorts).min(1),
});

function cidrAllow<P extends z.ZodType<string>>(prefix: P) {
  return z.object({
    prefix,
    /** Empty: this prefix allows nothing, although a shorter entry would (an `except`). */
    allow: z.array(PolicyPorts),
  });
}

/**
 * One direction of a pod's policy. A connection is allowed when `enforce` is false, or when its
 * peer's identity is in `peers` with a matching protocol and port, or when the longest prefix in
 * `cidrs` of its family containing the peer's address (as on the wire, pod addresses included)
 * has a matching `allow`. `cidrs` is already resolved: each entry's `allow` holds every ipBlock
 * that covers the prefix and does not except it, so one longest-prefix lookup decides.
 */
export const DirectionPolicy = z.object({
  /** Default-deny in this direction (some NetworkPolicy selects the pod for it). */
  enforce: z.boolean(),
  peers: z.array(IdentityAllow),
  cidrs: z.object({
    IPv4: z.array(cidrAllow(Cidr4)),
    IPv6: z.array(cidrAllow(Cidr6)),
  }),
});

/**
 * v2 of the per-node pod policy: per direction, peers by identity and, per address family, CIDR
 * entries (ipBlock with except). Published for every scheduled pod that has an identity, also
 * when no policy selects it (enforce false both ways), so an agent can tell "open" from "not
 * computed yet".
 */
export const PodPolicyDesiredV2 = defineMessage({
  type: 'io.dyad.node.policy.v2',
  version: 2,
  schema: z.discriminatedUnion('op', [
    z.object({
      op: z.literal('upsert'),
      namespace: Name,
      name: Name,
      uid: Name,
      /** The pod's own identity. */
      identity: Identity,
      /** Names of the NetworkPolicies (in the pod's namespace) that select the pod, sorted. */
      policies: z.array(Name),
      ingress: DirectionPolicy,
      egress: DirectionPolicy,
    }),
    z.object({ op: z.literal('delete'), namespace: Name, name: Name }),
  ]),
  description:
    "The compiled NetworkPolicy of a pod's endpoints on one node, per direction: default-deny, allowed peers by identity with protocols and port ranges, and longest-prefix CIDR entries per family for ipBlocks. Delete when the pod is gone from the node.",
  subjectPattern: `${NODE_DESIRED_SUBJECT_ROOT}.{node}.policy.{namespace}.{name}`,
  stream: NODE_DESIRED_STREAM,
});

export const PolicyStream: StreamSpec = {
  name: POLICY_STREAM,
  description:
    'The policy service: identities and their labels, pod identities, NetworkPolicy statuses; last value per subject, removals as tombstones.',
  subjects: [`${POLICY_SUBJECT_ROOT}.>`],
  storage: 'file',
  maxMsgsPerSubject: 1,
  allowMsgTtl: true,
  duplicateWindowMs: 120_000,
};

export const PolicyIdentityBucket: KvBucketSpec = {
  bucket: POLICY_IDENTITY_BUCKET,
  description:
    'The identity allocator: number → labels and label-set hash → number, both created with compare-and-set.',
  history: 1,
  storage: 'file',
  // Freed identities are purged with an expiring marker, so the bucket does not keep a delete
  // marker for every identity that ever existed.
  allowMsgTtl: true,
};

/**
 * Keys of DYAD_POLICY_IDENTITIES.
 *
 * - `id.<n>` → IdentityRecord: the number n is taken, by these labels. Created first.
 * - `labels.<sha256 of the labels joined by "\n", hex>` → IdentityLabelsRecord: this label set
 *   has number n. Created second; a replica that loses this race frees its `id.<n>` and uses the
 *   winner's number. An `id.<n>` that no `labels.` key names (a replica died in between) is
 *   garbage-collected like an unused identity.
 */
export const PolicyIdentityKey = {
  id: (identity: number): string => `id.${identity}`,
  idPrefix: 'id.',
  idFilter: 'id.>',
  labels: (hash: string): string => `labels.${hash}`,
  labelsPrefix: 'labels.',
  labelsFilter: 'labels.>',
} as const;

export const IdentityRecord = z.object({
  v: z.literal(1),
  labels: z.array(z.string()),
  /** Epoch ms. */
  createdAt: z.number(),
});

export const IdentityLabelsRecord = z.object({
  v: z.literal(1),
  identity: PodIdentity,
});

export type PolicyPortsValue = z.output<typeof PolicyPorts>;
export type IdentityAllowValue = z.output<typeof IdentityAllow>;
export type DirectionPolicyValue = z.output<typeof DirectionPolicy>;
export type PolicyProblemValue = z.output<typeof PolicyProblem>;
export type IdentityRecordValue = z.output<typeof IdentityRecord>;
export type IdentityLabelsRecordValue = z.output<typeof IdentityLabelsRecord>;
