import { AddressError } from './errors.ts';
import { ADDRESS_BITS, Family, FamilyVersion, familyOfVersion } from './family.ts';
import { formatIp, parseIpInto, tryParseIp } from './text.ts';
import type { IpBytes } from './text.ts';

/** An address prefix: `bytes` holds the network with every bit past `length` zero. */
export interface Prefix extends IpBytes {
  readonly length: number;
}

// Two parsers, because Dyad reads prefixes from two kinds of writer. Text that Dyad's own
// configuration or messages carry (pools, blocks, routes, podCIDRs) is strict: '198.18.0.1/16'
// there is a typo, refused with the network it probably meant. Text from elsewhere that has always
// been read loosely (a NetworkPolicy's ipBlock, a map key, an operator's argument) is lenient: the
// host bits are masked and a bare address is its host prefix. Both agree on the address syntax
// because both read it with parseIpInto.

/** Zeroes every bit past `length`, so equal prefixes encode to equal keys. */
export function maskBytes(bytes: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(16);
  const full = length >> 3;
  out.set(bytes.subarray(0, full), 0);
  const rem = length & 7;
  if (rem) out[full] = (bytes[full] ?? 0) & (0xff << (8 - rem)) & 0xff;
  return out;
}

/** Zeroes every bit past `length` of the 16-byte address at bytes[at..]. */
export function maskInPlace(bytes: Uint8Array, length: number, at = 0): void {
  const full = length >> 3;
  const rem = length & 7;
  let i = full;
  if (rem) {
    bytes[at + i] = (bytes[at + i] ?? 0) & (0xff << (8 - rem)) & 0xff;
    i++;
  }
  for (; i < 16; i++) bytes[at + i] = 0;
}

/** The prefix length after the slash at `slash`, or -1 when it is not 0..max in decimal. */
function lengthAfter(text: string, slash: number, max: number): number {
  const digits = text.length - slash - 1;
  if (digits < 1 || digits > 3) return -1;
  if (digits > 1 && text.charCodeAt(slash + 1) === 48) return -1; // leading zero
  let length = 0;
  for (let i = slash + 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return -1;
    length = length * 10 + (c - 48);
  }
  return length <= max ? length : -1;
}

/** Lenient: parses "addr/len" (or a bare address) into out[at..at+16), masked. Returns
 *  `version << 8 | length` with the family's `FamilyVersion` (a number, not an object: this runs
 *  once per entry of a batch). */
export function parsePrefixInto(prefix: string, out: Uint8Array, at = 0): number {
  const slash = prefix.indexOf('/');
  const family = parseIpInto(slash < 0 ? prefix : prefix.slice(0, slash), out, at);
  const max = ADDRESS_BITS[family];
  const length = slash < 0 ? max : lengthAfter(prefix, slash, max);
  if (length < 0) throw new AddressError(`bad prefix length in ${prefix}`);
  maskInPlace(out, length, at);
  return (FamilyVersion[family] << 8) | length;
}

/**
 * Lenient: "198.18.0.7/24" is 198.18.0.0/24 (host bits masked) and a bare address is a host
 * prefix (/32 or /128). For text Dyad does not write itself. Throws AddressError.
 */
export function parsePrefixLenient(prefix: string): Prefix {
  const bytes = new Uint8Array(16);
  const packed = parsePrefixInto(prefix, bytes, 0);
  return { family: familyOfVersion(packed >> 8) ?? Family.IPv6, bytes, length: packed & 0xff };
}

/**
 * Strict: "addr/len" with no bit set past `len`; anything else throws AddressError whose message
 * says why (and, for host bits, names the network that was probably meant).
 */
export function parsePrefixStrict(prefix: string): Prefix {
  const slash = prefix.indexOf('/');
  if (slash < 0) throw new AddressError(`'${prefix}' is not a CIDR (no /prefix)`);
  const bytes = new Uint8Array(16);
  let family: Family;
  try {
    family = parseIpInto(prefix.slice(0, slash), bytes, 0);
  } catch {
    throw new AddressError(`'${prefix}' is not a CIDR`);
  }
  const max = ADDRESS_BITS[family];
  const length = lengthAfter(prefix, slash, max);
  if (length < 0) {
    const tooLong = /^[1-9][0-9]*$/.test(prefix.slice(slash + 1));
    throw new AddressError(
      tooLong ? `'${prefix}' has a prefix longer than ${max} bits` : `'${prefix}' is not a CIDR`,
    );
  }
  const masked = maskBytes(bytes, length);
  for (let i = 0; i < 16; i++) {
    if (masked[i] !== bytes[i]) {
      const net = formatPrefix({ family, bytes: masked, length });
      throw new AddressError(`'${prefix}' has host bits set (the network is ${net})`);
    }
  }
  return { family, bytes, length };
}

export function formatPrefix(p: Prefix): string {
  return `${formatIp(p.family, p.bytes)}/${p.length}`;
}

/** Whether `address` lies in `prefix` (both text, the prefix read leniently; false when either does not parse). */
export function prefixContains(prefix: string, address: string): boolean {
  const ip = tryParseIp(address);
  let p: Prefix;
  try {
    p = parsePrefixLenient(prefix);
  } catch (err) {
    if (err instanceof AddressError) return false;
    throw err;
  }
  if (ip === undefined || ip.family !== p.family) return false;
  const a = maskBytes(ip.bytes, p.length);
  const b = maskBytes(p.bytes, p.length);
  return a.every((byte, i) => byte === b[i]);
}
