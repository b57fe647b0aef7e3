import type { Family } from '@dyad/contracts';
import { formatIp, ipFromBigInt, ipToBigInt, tryParseIp } from '@dyad/netaddr';

/**
 * Addresses as unsigned integers (bigint: IPv6 needs 128 bits), and CIDRs as base + prefix, for
 * carving blocks. Text is read and written by @dyad/netaddr, the parser the datapath codecs use;
 * CIDRs are strict here: one with host bits set is refused with a reason, not masked.
 */

export const BITS: Readonly<Record<Family, number>> = { IPv4: 32, IPv6: 128 };

export interface CidrValue {
  readonly family: Family;
  readonly base: bigint;
  readonly prefix: number;
}

function parseFamily(s: string, family: 4 | 6): bigint | undefined {
  const ip = tryParseIp(s);
  return ip?.family === family ? ipToBigInt(ip) : undefined;
}

export function parseIPv4(s: string): bigint | undefined {
  return parseFamily(s, 4);
}

export function parseIPv6(s: string): bigint | undefined {
  return parseFamily(s, 6);
}

export function parseAddress(s: string): { family: Family; value: bigint } | undefined {
  const ip = tryParseIp(s);
  if (ip === undefined) return undefined;
  return { family: ip.family === 4 ? 'IPv4' : 'IPv6', value: ipToBigInt(ip) };
}

export function formatIPv4(v: bigint): string {
  return formatIp(4, ipFromBigInt(4, v).bytes);
}

/** RFC 5952: lowercase, no leading zeros, the longest run of two or more zero groups as '::'. */
export function formatIPv6(v: bigint): string {
  return formatIp(6, ipFromBigInt(6, v).bytes);
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
