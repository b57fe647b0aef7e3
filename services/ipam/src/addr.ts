import type { Family } from '@dyad/contracts';

/**
 * Addresses as unsigned integers (bigint: IPv6 needs 128 bits), and CIDRs as base + prefix. Pure
 * and strict: a string either is one canonical thing or is refused with a reason.
 */

export const BITS: Readonly<Record<Family, number>> = { IPv4: 32, IPv6: 128 };

export interface CidrValue {
  readonly family: Family;
  readonly base: bigint;
  readonly prefix: number;
}

export function parseIPv4(s: string): bigint | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  let v = 0n;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    v = (v << 8n) | BigInt(n);
  }
  return v;
}

export function parseIPv6(s: string): bigint | undefined {
  if (s.length === 0 || s.length > 45 || s.includes('%')) return undefined;
  let head = s;
  let tailV4: bigint | undefined;
  const lastColon = s.lastIndexOf(':');
  if (s.includes('.', lastColon)) {
    tailV4 = parseIPv4(s.slice(lastColon + 1));
    if (tailV4 === undefined) return undefined;
    // '::1.2.3.4' keeps its '::'; 'a:b:...:1.2.3.4' drops the separator before the quad.
    head = s.slice(0, lastColon + 1);
    head = head.endsWith('::') ? head : head.slice(0, -1);
  }
  const groupsWanted = tailV4 === undefined ? 8 : 6;
  const halves = head.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const left = parse(halves[0] ?? '');
  const right = halves.length === 2 ? parse(halves[1] ?? '') : [];
  if (left === undefined || right === undefined) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const missing = groupsWanted - left.length - right.length;
    if (missing < 1) return undefined;
    groups = [...left, ...new Array<number>(missing).fill(0), ...right];
  } else {
    groups = left;
  }
  if (groups.length !== groupsWanted) return undefined;
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(g);
  if (tailV4 !== undefined) v = (v << 32n) | tailV4;
  return v;
}

export function parseAddress(s: string): { family: Family; value: bigint } | undefined {
  const v4 = parseIPv4(s);
  if (v4 !== undefined) return { family: 'IPv4', value: v4 };
  const v6 = parseIPv6(s);
  if (v6 !== undefined) return { family: 'IPv6', value: v6 };
  return undefined;
}

export function formatIPv4(v: bigint): string {
  const n = Number(v);
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** RFC 5952: lowercase, no leading zeros, the longest run of two or more zero groups as '::'. */
export function formatIPv6(v: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((v >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

export function formatAddress(family: Family, v: bigint): string {
  return family === 'IPv4' ? formatIPv4(v) : formatIPv6(v);
}

export function formatCidr(c: CidrValue): string {
  return `${formatAddress(c.family, c.base)}/${c.prefix}`;
}

export type CidrParse =
  { readonly ok: true; readonly cidr: CidrValue } | { readonly ok: false; readonly reason: string };

/** Parses `a.b.c.d/n` or `x::y/n`; an address with host bits set is refused, naming the network. */
export function parseCidr(s: string): CidrParse {
  const slash = s.indexOf('/');
  if (slash < 0) return { ok: false, reason: `'${s}' is not a CIDR (no /prefix)` };
  const addr = parseAddress(s.slice(0, slash));
  const prefixText = s.slice(slash + 1);
  if (addr === undefined || !/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) {
    return { ok: false, reason: `'${s}' is not a CIDR` };
  }
  const prefix = Number(prefixText);
  const bits = BITS[addr.family];
  if (prefix > bits) {
    return { ok: false, reason: `'${s}' has a prefix longer than ${bits} bits` };
  }
  const base = addr.value & prefixMask(addr.family, prefix);
  if (base !== addr.value) {
    const net = formatCidr({ family: addr.family, base, prefix });
    return { ok: false, reason: `'${s}' has host bits set (the network is ${net})` };
  }
  return { ok: true, cidr: { family: addr.family, base, prefix } };
}

export function prefixMask(family: Family, prefix: number): bigint {
  const bits = BigInt(BITS[family]);
  const all = (1n << bits) - 1n;
  return (all >> BigInt(prefix)) ^ all;
}

export function cidrSize(c: Pick<CidrValue, 'family' | 'prefix'>): bigint {
  return 1n << BigInt(BITS[c.family] - c.prefix);
}

export function cidrContains(c: CidrValue, family: Family, v: bigint): boolean {
  return family === c.family && v >= c.base && v < c.base + cidrSize(c);
}

export function cidrsOverlap(a: CidrValue, b: CidrValue): boolean {
  if (a.family !== b.family) return false;
  return a.base < b.base + cidrSize(b) && b.base < a.base + cidrSize(a);
}
