// Test fixtures: the upstream NetworkPolicy e2e model (namespaces x, y, z labelled ns=<name>;
// pods a, b, c labelled pod=<name>, serving TCP and UDP on 80 and 81 under the upstream port
// names) in both families, a deterministic identity table, and a reachability matrix that a
// person can read when a case fails.
import type { Family } from '@dyad/netaddr';
import { NetworkPolicy } from '@dyad/contracts';
import type { z } from 'zod';
import { readPrefix } from '../src/cidr.ts';
import type { Prefix } from '../src/cidr.ts';
import { directionAllows } from '../src/evaluate.ts';
import { identityLabels, labelSetKey, namespaceLabels } from '../src/labels.ts';
import type { Labels } from '../src/labels.ts';
import type { CompiledPod, PodInput } from '../src/model.ts';
import { podKey } from '../src/model.ts';
import type { ContainerPortInput, Protocol } from '../src/ports.ts';
import { normalizePolicy } from '../src/spec.ts';
import type { PolicySpec } from '../src/spec.ts';

export const NAMESPACES = ['x', 'y', 'z'] as const;
export const POD_NAMES = ['a', 'b', 'c'] as const;

/** One number per label set, in the order label sets are first seen: the allocator's contract. */
export class IdentityTable {
  readonly #byKey = new Map<string, number>();
  #next = 0x10000;

  of(namespace: string, labels: Labels, nsLabels: Labels): number {
    const key = labelSetKey(identityLabels(namespace, labels, nsLabels));
    let id = this.#byKey.get(key);
    if (id === undefined) this.#byKey.set(key, (id = this.#next++));
    return id;
  }
}

export const UPSTREAM_PORTS: readonly ContainerPortInput[] = [
  { name: 'serve-80-tcp', port: 80, protocol: 'TCP' },
  { name: 'serve-81-tcp', port: 81, protocol: 'TCP' },
  { name: 'serve-80-udp', port: 80, protocol: 'UDP' },
  { name: 'serve-81-udp', port: 81, protocol: 'UDP' },
];

export function addressOf(ns: string, pod: string, family: Family): string {
  const n = NAMESPACES.indexOf(ns as (typeof NAMESPACES)[number]) + 1;
  const p = POD_NAMES.indexOf(pod as (typeof POD_NAMES)[number]) + 10;
  return family === 'IPv4' ? `198.18.${n}.${p}` : `fd00:18:${n}::${p}`;
}

function host(address: string): Prefix {
  const p = readPrefix(address);
  if (p === undefined) throw new Error(`bad address ${address}`);
  return p;
}

export interface PodOptions {
  readonly labels?: Labels;
  readonly nsLabels?: Labels;
  readonly node?: string | undefined;
  readonly ports?: readonly ContainerPortInput[];
  readonly ips?: readonly string[];
}

export function makePod(
  ids: IdentityTable,
  ns: string,
  name: string,
  o: PodOptions = {},
): PodInput {
  const labels = o.labels ?? { pod: name };
  const nsLabels = namespaceLabels(ns, o.nsLabels ?? { ns });
  return {
    namespace: ns,
    name,
    uid: `uid-${ns}-${name}`,
    node: 'node' in o ? o.node : `node-${POD_NAMES.indexOf(name as 'a') + 1}`,
    identity: ids.of(ns, labels, nsLabels),
    labels,
    nsLabels,
    ports: o.ports ?? UPSTREAM_PORTS,
    ips: (o.ips ?? [addressOf(ns, name, 'IPv4'), addressOf(ns, name, 'IPv6')]).map(host),
  };
}

/** The nine upstream pods. */
export function upstreamPods(ids: IdentityTable): PodInput[] {
  return NAMESPACES.flatMap((ns) => POD_NAMES.map((p) => makePod(ids, ns, p)));
}

/** A NetworkPolicy as kube-bridge would publish it (schema defaults applied), normalized. */
export function makePolicy(
  ns: string,
  name: string,
  spec: z.input<typeof NetworkPolicy>['spec'],
): PolicySpec {
  return normalizePolicy(
    NetworkPolicy.parse({
      metadata: { uid: `uid-${name}`, name, namespace: ns, resourceVersion: '1', labels: {} },
      spec,
    }),
  );
}

export function podAddress(pod: PodInput, family: Family): string | undefined {
  return pod.ips.find((p) => p.family === family)?.text.replace(/\/\d+$/, '');
}

/** Whether `from` may open a connection to `to`: `from`'s egress and `to`'s ingress both admit it. */
export function reaches(
  compiled: ReadonlyMap<string, CompiledPod>,
  from: PodInput,
  to: PodInput,
  protocol: Protocol,
  port: number,
  family: Family,
): boolean {
  const src = podAddress(from, family);
  const dst = podAddress(to, family);
  if (src === undefined || dst === undefined) return false;
  const out = compiled.get(podKey(from.namespace, from.name))?.body.egress;
  const into = compiled.get(podKey(to.namespace, to.name))?.body.ingress;
  const egressOk =
    out === undefined ||
    directionAllows(out, { identity: to.identity, address: dst }, protocol, port);
  const ingressOk =
    into === undefined ||
    directionAllows(into, { identity: from.identity, address: src }, protocol, port);
  return egressOk && ingressOk;
}

/**
 * The reachability matrix as text, rows are sources, columns destinations, `.` connected and
 * `X` blocked, so a failing case prints as a readable diff.
 */
export function matrix(
  pods: readonly PodInput[],
  connected: (from: PodInput, to: PodInput) => boolean,
): string {
  const names = pods.map((p) => `${p.namespace}/${p.name}`);
  const lines = [`     ${names.join(' ')}`];
  for (const from of pods) {
    const cells = pods.map((to) => (connected(from, to) ? '.' : 'X').padStart(3));
    lines.push(`${from.namespace}/${from.name} ${cells.join(' ')}`);
  }
  return lines.join('\n');
}

/** Expected matrix: everything connected except where `blocked` says otherwise. */
export function expected(
  pods: readonly PodInput[],
  blocked: (from: string, to: string) => boolean,
): string {
  return matrix(pods, (f, t) => !blocked(`${f.namespace}/${f.name}`, `${t.namespace}/${t.name}`));
}
