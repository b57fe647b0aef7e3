import { FAMILIES } from '@dyad/netaddr';
import type { Family } from '@dyad/netaddr';
import { ReservedIdentity } from '@dyad/contracts';
import { canonicalAddress, canonicalPrefix, familyOf, hostPrefix } from './ip.ts';
import type { EndpointInput, IpcacheEntry, NodeInput, RouteEntry } from './model.ts';

/**
 * A claim on a prefix by one source: a node's address, a node's pod CIDR, or an endpoint's
 * address. Several sources may claim one prefix (an address reused before the old pod's removal
 * arrived, a misconfiguration); `beats` picks one, by rules that depend only on the claims, so
 * the incremental result equals the one computed from scratch.
 */
export interface Claim {
  readonly key: string;
  readonly kind: IpcacheEntry['kind'];
  readonly hostNode: string;
  readonly identity: number;
  readonly since: number;
  readonly pod?: { readonly namespace: string; readonly name: string };
}

/** The node-independent part of an ipcache entry; `local` is added per receiving node. */
export type GlobalEntry = Omit<IpcacheEntry, 'local'>;

// A node's own address outranks a pod that claims it (a spoof or a mistake); a pod's exact
// address outranks nothing else of equal length, since pod CIDRs are shorter prefixes.
const KIND_RANK: Record<IpcacheEntry['kind'], number> = { node: 0, pod: 1, 'pod-cidr': 2 };

export function beats(a: Claim, b: Claim): boolean {
  const ka = KIND_RANK[a.kind];
  const kb = KIND_RANK[b.kind];
  if (ka !== kb) return ka < kb;
  if (a.since !== b.since) return a.since > b.since;
  return a.key < b.key;
}

export function best(claims: Iterable<Claim>): Claim | undefined {
  let winner: Claim | undefined;
  for (const c of claims) if (winner === undefined || beats(c, winner)) winner = c;
  return winner;
}

export const claimKey = {
  node: (name: string) => `n:${name}`,
  cidr: (name: string) => `c:${name}`,
  endpoint: (id: string) => `p:${id}`,
} as const;

/**
 * A node's canonical input: unparseable values dropped, each address of the family it claims, pod
 * CIDRs canonical, each once and sorted (so two spellings or orders of one assignment are equal).
 */
export function normalizeNode(input: NodeInput): NodeInput {
  const podCidrs = new Set<string>();
  for (const cidr of input.podCidrs) {
    const c = canonicalPrefix(cidr);
    if (c !== undefined) podCidrs.add(c);
  }
  const addresses: Partial<Record<Family, string>> = {};
  for (const f of FAMILIES) {
    const addr = input.addresses[f];
    const a = addr === undefined ? undefined : canonicalAddress(addr);
    if (a !== undefined && familyOf(a) === f) addresses[f] = a;
  }
  return { podCidrs: [...podCidrs].sort(), addresses };
}

export function nodeClaims(name: string, node: NodeInput): Array<[string, Claim]> {
  const out: Array<[string, Claim]> = [];
  for (const f of FAMILIES) {
    const addr = node.addresses[f];
    const prefix = addr === undefined ? undefined : hostPrefix(addr);
    if (prefix !== undefined) {
      out.push([
        prefix,
        {
          key: claimKey.node(name),
          kind: 'node',
          hostNode: name,
          identity: ReservedIdentity.host,
          since: 0,
        },
      ]);
    }
  }
  return out;
}

/** One claim per pod CIDR of the node, every set of both families. */
export function cidrClaims(name: string, node: NodeInput): Array<[string, Claim]> {
  return node.podCidrs.map((cidr) => [
    cidr,
    {
      key: claimKey.cidr(name),
      kind: 'pod-cidr',
      hostNode: name,
      identity: ReservedIdentity.cluster,
      since: 0,
    },
  ]);
}

export function endpointClaims(id: string, ep: EndpointInput): Array<[string, Claim]> {
  const out: Array<[string, Claim]> = [];
  const seen = new Set<string>();
  for (const ip of ep.ips) {
    const prefix = hostPrefix(ip);
    if (prefix === undefined || seen.has(prefix)) continue;
    seen.add(prefix);
    out.push([
      prefix,
      {
        key: claimKey.endpoint(id),
        kind: 'pod',
        hostNode: ep.node,
        identity: ep.identity,
        since: ep.since,
        ...(ep.pod === undefined
          ? {}
          : { pod: { namespace: ep.pod.namespace, name: ep.pod.name } }),
      },
    ]);
  }
  return out;
}

/** Forwarding towards a node: one route per pod CIDR of a family the node has an address of. */
export function nodeRoutes(name: string, node: NodeInput): RouteEntry[] {
  const out: RouteEntry[] = [];
  for (const cidr of node.podCidrs) {
    const f = familyOf(cidr);
    const via = f === undefined ? undefined : node.addresses[f];
    if (f !== undefined && via !== undefined) {
      out.push({ family: f, cidr, viaNode: name, via, mode: 'native' });
    }
  }
  return out;
}

/** Of several nodes claiming one CIDR, the one with the smallest name carries the route. */
export function bestRoute(routes: Iterable<RouteEntry>): RouteEntry | undefined {
  let winner: RouteEntry | undefined;
  for (const r of routes) if (winner === undefined || r.viaNode < winner.viaNode) winner = r;
  return winner;
}

export function globalEntry(
  prefix: string,
  claim: Claim,
  nodes: ReadonlyMap<string, NodeInput>,
): GlobalEntry {
  const family = familyOf(prefix);
  const hostAddress =
    family === undefined ? undefined : nodes.get(claim.hostNode)?.addresses[family];
  return {
    prefix,
    identity: claim.identity,
    kind: claim.kind,
    hostNode: claim.hostNode,
    ...(hostAddress === undefined ? {} : { hostAddress }),
    ...(claim.pod === undefined ? {} : { pod: claim.pod }),
  };
}

export function project(entry: GlobalEntry, node: string): IpcacheEntry {
  return { ...entry, local: entry.hostNode === node };
}
