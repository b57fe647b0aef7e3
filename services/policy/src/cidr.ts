import type { Family } from '@dyad/netaddr';
import type { PolicyPortsValue } from '@dyad/contracts';
import { formatPrefix, parsePrefixLenient } from '@dyad/netaddr';
import { PortSet } from './ports.ts';

/** A parsed, canonical prefix (host bits cleared). */
export interface Prefix {
  readonly family: Family;
  readonly bytes: Uint8Array;
  readonly length: number;
  /** Canonical text (RFC 5952 for IPv6). */
  readonly text: string;
}

/** netaddr's lenient reading (host bits masked; a bare address is a host prefix) with canonical
 *  text; undefined when the text is not a prefix. */
export function readPrefix(text: string): Prefix | undefined {
  try {
    const p = parsePrefixLenient(text);
    return {
      family: p.family,
      bytes: p.bytes,
      length: p.length,
      text: formatPrefix(p),
    };
  } catch {
    return undefined;
  }
}

/** Whether every address of `inner` is in `outer` (never across families). */
export function contains(outer: Prefix, inner: Prefix): boolean {
  if (outer.family !== inner.family || inner.length < outer.length) return false;
  const full = outer.length >> 3;
  for (let i = 0; i < full; i++) if (outer.bytes[i] !== inner.bytes[i]) return false;
  const rest = outer.length & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((outer.bytes[full] as number) & mask) === ((inner.bytes[full] as number) & mask);
}

/** Address order, then shorter first: a prefix comes before those inside it. */
export function comparePrefixes(a: Prefix, b: Prefix): number {
  for (let i = 0; i < 16; i++) {
    const d = (a.bytes[i] as number) - (b.bytes[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/** An ipBlock as it applies to one pod: its addresses minus the excepts, with what they may do. */
export interface CidrGrant {
  readonly prefix: Prefix;
  readonly excepts: readonly Prefix[];
  readonly ports: PortSet;
}

export interface CidrAllow {
  readonly prefix: string;
  readonly allow: PolicyPortsValue[];
}

export type CidrTable = { IPv4: CidrAllow[]; IPv6: CidrAllow[] };

interface Node {
  readonly prefix: Prefix;
  readonly ports: PortSet;
  readonly key: string;
}

/**
 * The grants of one pod and direction as longest-prefix entries per family. Every cidr and
 * except is a candidate prefix; all addresses whose longest match among the candidates is P are
 * in the same grants (a grant's cidr and excepts are candidates themselves), so P's entry allows
 * the union of the grants that contain P and do not except it. An entry that allows the same as
 * its nearest kept ancestor (or nothing, with no ancestor) is redundant and left out; what stays
 * is a canonical table that a single LPM lookup per packet decides exactly.
 */
export function resolveGrants(grants: readonly CidrGrant[]): CidrTable {
  const out: CidrTable = { IPv4: [], IPv6: [] };
  if (grants.length === 0) return out;
  const candidates = new Map<string, Prefix>();
  for (const g of grants) {
    candidates.set(g.prefix.text, g.prefix);
    for (const e of g.excepts) candidates.set(e.text, e);
  }
  const nodes: Node[] = [];
  for (const p of candidates.values()) {
    const ports = new PortSet();
    for (const g of grants) {
      if (contains(g.prefix, p) && !g.excepts.some((e) => contains(e, p))) ports.addSet(g.ports);
    }
    nodes.push({ prefix: p, ports, key: ports.key() });
  }
  // Shorter first, so a node's ancestors are decided before it.
  nodes.sort(
    (a, b) => a.prefix.length - b.prefix.length || (a.prefix.text < b.prefix.text ? -1 : 1),
  );
  const kept: Node[] = [];
  for (const n of nodes) {
    let parent: Node | undefined;
    for (const k of kept) {
      if (
        contains(k.prefix, n.prefix) &&
        (parent === undefined || k.prefix.length > parent.prefix.length)
      ) {
        parent = k;
      }
    }
    const parentKey = parent === undefined ? new PortSet().key() : parent.key;
    if (n.key !== parentKey) kept.push(n);
  }
  kept.sort((a, b) => comparePrefixes(a.prefix, b.prefix));
  for (const n of kept) {
    out[n.prefix.family].push({ prefix: n.prefix.text, allow: n.ports.toRules() });
  }
  return out;
}
