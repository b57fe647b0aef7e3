import {
  ADDRESS_BITS,
  AddressError,
  Family,
  formatIp,
  ipFromBigInt,
  ipToBigInt,
  parsePrefixStrict,
  tryParseIp,
} from '@dyad/netaddr';
import type { Prefix } from '@dyad/netaddr';

/**
 * Addresses as unsigned integers (bigint: IPv6 needs 128 bits), and CIDRs as base + prefix, for
 * carving blocks. Text is read and written by @dyad/netaddr, the parser the datapath codecs use;
 * CIDRs are read with its strict parser: one with host bits set is refused with a reason.
 */

export interface CidrValue {
  readonly family: Family;
  readonly base: bigint;
  readonly prefix: number;
}

function parseFamily(s: string, family: Family): bigint | undefined {
  const ip = tryParseIp(s);
  return ip?.family === family ? ipToBigInt(ip) : undefined;
}

export function parseIPv4(s: string): bigint | undefined {
  return parseFamily(s, Family.IPv4);
}

export function parseIPv6(s: string): bigint | undefined {
  return parseFamily(s, Family.IPv6);
}

export function parseAddress(s: string): { family: Family; value: bigint } | undefined {
  const ip = tryParseIp(s);
  if (ip === undefined) return undefined;
  return { family: ip.family, value: ipToBigInt(ip) };
}

export function formatIPv4(v: bigint): string {
  return formatIp(Family.IPv4, ipFromBigInt(Family.IPv4, v).bytes);
}

/** RFC 5952: lowercase, no leading zeros, the longest run of two or more zero groups as '::'. */
export function formatIPv6(v: bigint): string {
  return formatIp(Family.IPv6, ipFromBigInt(Family.IPv6, v).bytes);
}

export function formatAddress(family: Family, v: bigint): string {
  return family === Family.IPv4 ? formatIPv4(v) : formatIPv6(v);
}

export function formatCidr(c: CidrValue): string {
  return `${formatAddress(c.family, c.base)}/${c.prefix}`;
}

/** netaddr's strictly parsed prefix (host bits refused) as ipam does arithmetic on it. */
export function cidrValue(p: Prefix): CidrValue {
  return { family: p.family, base: ipToBigInt(p), prefix: p.length };
}

/** `parsePrefixStrict` as a CidrValue, undefined when the text is refused. */
export function tryCidrValue(text: string): CidrValue | undefined {
  try {
    return cidrValue(parsePrefixStrict(text));
  } catch (err) {
    if (err instanceof AddressError) return undefined;
    throw err;
  }
}

export function prefixMask(family: Family, prefix: number): bigint {
  const bits = BigInt(ADDRESS_BITS[family]);
  const all = (1n << bits) - 1n;
  return (all >> BigInt(prefix)) ^ all;
}

export function cidrSize(c: Pick<CidrValue, 'family' | 'prefix'>): bigint {
  return 1n << BigInt(ADDRESS_BITS[c.family] - c.prefix);
}

export function cidrContains(c: CidrValue, family: Family, v: bigint): boolean {
  return family === c.family && v >= c.base && v < c.base + cidrSize(c);
}

export function cidrsOverlap(a: CidrValue, b: CidrValue): boolean {
  if (a.family !== b.family) return false;
  return a.base < b.base + cidrSize(b) && b.base < a.base + cidrSize(a);
}
