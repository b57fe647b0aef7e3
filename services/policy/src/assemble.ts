import { ReservedIdentity } from '@dyad/contracts';
import type { DirectionPolicyValue, IdentityAllowValue } from '@dyad/contracts';
import type { CidrGrant, Prefix } from './cidr.ts';
import { resolveGrants } from './cidr.ts';
import type { CompileOptions, PodInput, PodPolicyBody } from './model.ts';
import { PortSet } from './ports.ts';

/** Identity 0 in a rule: any peer at all (the datapath's DY_IDENTITY_ANY). */
export const ANY_PEER = 0;

/**
 * Collects what one direction of one pod allows, from any number of rules of any number of
 * policies (they unite), and builds the canonical contract value: identities with equal ports
 * grouped and sorted, CIDR grants resolved to longest-prefix entries. Both compilers (from
 * scratch and incremental) end here, so equal inputs give byte-equal messages.
 */
export class DirectionBuilder {
  enforce = false;
  readonly #peers = new Map<number, PortSet>();
  readonly #grants: CidrGrant[] = [];

  /** Lets `identity` do what `ports` allows (added to what it may already do). */
  allow(identity: number, ports: PortSet): void {
    let s = this.#peers.get(identity);
    if (s === undefined) this.#peers.set(identity, (s = new PortSet()));
    s.addSet(ports);
  }

  /** Lets addresses in `prefix` but not in `excepts` do what `ports` allows. */
  grant(prefix: Prefix, excepts: readonly Prefix[], ports: PortSet): void {
    // A copy: the caller may go on adding to its set for other peers.
    const own = new PortSet();
    own.addSet(ports);
    this.#grants.push({ prefix, excepts, ports: own });
  }

  build(opts: CompileOptions): DirectionPolicyValue {
    if (!this.enforce) return { enforce: false, peers: [], cidrs: { IPv4: [], IPv6: [] } };
    if (opts.allowHost) this.allow(ReservedIdentity.host, anyPorts());
    const groups = new Map<string, { ports: PortSet; identities: number[] }>();
    for (const [id, ports] of this.#peers) {
      if (ports.isEmpty()) continue;
      const key = ports.key();
      const g = groups.get(key);
      if (g === undefined) groups.set(key, { ports, identities: [id] });
      else g.identities.push(id);
    }
    const peers: IdentityAllowValue[] = [];
    for (const g of groups.values()) {
      g.identities.sort((a, b) => a - b);
      peers.push({ identities: g.identities, allow: g.ports.toRules() });
    }
    // Each identity is in one group, so the smallest identities order the groups totally.
    peers.sort((a, b) => (a.identities[0] as number) - (b.identities[0] as number));
    return { enforce: true, peers, cidrs: resolveGrants(this.#grants) };
  }
}

export function anyPorts(): PortSet {
  const s = new PortSet();
  s.addAny();
  return s;
}

/** The message body of a pod from its two directions and the names of the policies selecting it. */
export function podBody(
  pod: PodInput,
  policies: readonly string[],
  ingress: DirectionBuilder,
  egress: DirectionBuilder,
  opts: CompileOptions,
): PodPolicyBody {
  return {
    namespace: pod.namespace,
    name: pod.name,
    uid: pod.uid,
    identity: pod.identity,
    policies: [...policies].sort(),
    ingress: ingress.build(opts),
    egress: egress.build(opts),
  };
}
