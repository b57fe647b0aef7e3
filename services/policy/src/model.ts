import type { PayloadOf, PodPolicyDesiredV2 } from '@dyad/contracts';
import type { Prefix } from './cidr.ts';
import type { Labels } from './labels.ts';
import type { ContainerPortInput } from './ports.ts';

/**
 * A pod as the compiler sees it: only pods that can hold traffic of their own (not host-network,
 * not finished) and whose identity is known. `nsLabels` are the namespace labels its identity was
 * allocated with, so every pod of one identity matches every selector alike.
 */
export interface PodInput {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  /** Undefined while unscheduled: then it is a peer, but has no per-node policy. */
  readonly node: string | undefined;
  readonly identity: number;
  readonly labels: Labels;
  readonly nsLabels: Labels;
  readonly ports: readonly ContainerPortInput[];
  /** The pod's addresses as host prefixes; egress named ports towards ipBlocks resolve by them. */
  readonly ips: readonly Prefix[];
}

type Upsert = Extract<PayloadOf<typeof PodPolicyDesiredV2>, { op: 'upsert' }>;

/** A pod's compiled policy: the v2 message without `op`. */
export type PodPolicyBody = Omit<Upsert, 'op'>;

/** Where a pod's policy goes and what it is. */
export interface CompiledPod {
  readonly node: string;
  readonly body: PodPolicyBody;
}

/** A change of one pod's per-node policy. A pod that moved is a delete on one node and an upsert on the other. */
export type PolicyDelta =
  | {
      readonly op: 'upsert';
      readonly node: string;
      readonly key: string;
      readonly body: PodPolicyBody;
    }
  | {
      readonly op: 'delete';
      readonly node: string;
      readonly key: string;
      readonly namespace: string;
      readonly name: string;
    };

export interface CompileOptions {
  /**
   * Let the pod's own node reach it and be reached whatever the policy (kubelet probes come
   * from the node; Cilium and Calico allow the local node by default): an any-protocol rule for
   * ReservedIdentity.host in each enforced direction.
   */
  readonly allowHost: boolean;
}

export function podKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

export function sameLabels(a: Labels, b: Labels): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

export function samePorts(
  a: readonly ContainerPortInput[],
  b: readonly ContainerPortInput[],
): boolean {
  return (
    a.length === b.length &&
    a.every((p, i) => {
      const q = b[i];
      return q !== undefined && p.name === q.name && p.port === q.port && p.protocol === q.protocol;
    })
  );
}

export function sameIps(a: readonly Prefix[], b: readonly Prefix[]): boolean {
  return a.length === b.length && a.every((p, i) => p.text === b[i]?.text);
}

/** Whether two inputs of one pod are equal in everything the compiler reads. */
export function samePod(a: PodInput, b: PodInput): boolean {
  return (
    a.uid === b.uid &&
    a.node === b.node &&
    a.identity === b.identity &&
    sameLabels(a.labels, b.labels) &&
    sameLabels(a.nsLabels, b.nsLabels) &&
    samePorts(a.ports, b.ports) &&
    sameIps(a.ips, b.ips)
  );
}
