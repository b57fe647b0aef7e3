import type { DirectionPolicyValue, PolicyPortsValue } from '@dyad/contracts';
import { ANY_PEER } from './assemble.ts';
import type { Prefix } from './cidr.ts';
import { contains, readPrefix } from './cidr.ts';
import type { Protocol } from './ports.ts';

/** The other end of a connection, as the datapath sees it: its identity and its address on the wire. */
export interface Peer {
  readonly identity: number;
  readonly address: string;
}

function portsMatch(rules: readonly PolicyPortsValue[], protocol: Protocol, port: number): boolean {
  return rules.some(
    (r) =>
      r.protocol === undefined ||
      (r.protocol === protocol &&
        (r.ports === undefined || (r.ports.from <= port && port <= r.ports.to))),
  );
}

/**
 * Whether one direction of a compiled pod policy admits a new connection, decided as the
 * datapath will: not enforcing; or the peer's identity (or "any peer") allowed for the protocol
 * and port; or the longest CIDR entry of the address's family that contains the peer's address
 * allows it. For tests and for explaining a verdict (`dyad policy get`).
 */
export function directionAllows(
  d: DirectionPolicyValue,
  peer: Peer,
  protocol: Protocol,
  port: number,
): boolean {
  if (!d.enforce) return true;
  for (const g of d.peers) {
    if (
      (g.identities.includes(peer.identity) || g.identities.includes(ANY_PEER)) &&
      portsMatch(g.allow, protocol, port)
    ) {
      return true;
    }
  }
  const addr = readPrefix(peer.address);
  if (addr === undefined) return false;
  let best: { prefix: Prefix; allow: readonly PolicyPortsValue[] } | undefined;
  for (const e of d.cidrs[addr.family]) {
    const p = readPrefix(e.prefix);
    if (
      p !== undefined &&
      contains(p, addr) &&
      (best === undefined || p.length > best.prefix.length)
    ) {
      best = { prefix: p, allow: e.allow };
    }
  }
  return best !== undefined && portsMatch(best.allow, protocol, port);
}
