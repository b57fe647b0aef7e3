import type { Family } from '@dyad/netaddr';
import type { EndpointStateValue, NodeBlockValue, NodeObject } from '@dyad/contracts';
import type { IdentitySource } from './identity.ts';
import { canonicalAddress, canonicalPrefix, familyOf } from './ip.ts';
import type { EndpointInput } from './model.ts';

/**
 * A node's address per family from its Node object: the first InternalIP of each family, else
 * the first ExternalIP. Those are what kubelet reports and what the node fabric carries.
 */
export function nodeAddresses(node: NodeObject): Partial<Record<Family, string>> {
  const out: Partial<Record<Family, string>> = {};
  for (const type of ['InternalIP', 'ExternalIP']) {
    for (const a of node.status.addresses) {
      if (a.type !== type) continue;
      const addr = canonicalAddress(a.address);
      const f = addr === undefined ? undefined : familyOf(addr);
      if (f !== undefined && out[f] === undefined) out[f] = addr;
    }
  }
  return out;
}

/**
 * A node's pod CIDRs from its IPAM assignment: every block of every set (a node's agent asks for
 * more sets as its blocks fill), canonical, each once, in the assignment's order. A block whose
 * CIDR is not of the family it names is left out.
 */
export function nodePodCidrs(blocks: readonly NodeBlockValue[]): string[] {
  const out: string[] = [];
  for (const b of blocks) {
    const cidr = canonicalPrefix(b.cidr);
    if (cidr !== undefined && familyOf(cidr) === b.family && !out.includes(cidr)) out.push(cidr);
  }
  return out;
}

/**
 * An endpoint report as the core's input, its identity the one the policy service published for
 * its pod (`unknown` until there is one), whatever the report says: agents take a pod's identity
 * from the router's entry for its address and report it back, so reading the reported value
 * would only return an agent's earlier word to it.
 */
export function endpointInput(ep: EndpointStateValue, identities: IdentitySource): EndpointInput {
  const since = Date.parse(ep.createdAt);
  return {
    node: ep.node,
    identity: identities.of(ep.pod),
    ips: [ep.ipv4, ep.ipv6].filter((ip): ip is string => ip !== undefined),
    since: Number.isFinite(since) ? since : 0,
    pod: { namespace: ep.pod.namespace, name: ep.pod.name },
  };
}
