import { isIPv4, isIPv6 } from 'node:net';
import type { Family } from '@dyad/contracts';

interface Parsed {
  readonly family: Family;
  readonly bytes: Uint8Array;
}

function parseV4Into(text: string, out: Uint8Array, at: number): boolean {
  const parts = text.split('.');
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const n = Number(parts[i]);
    if (!Number.isInteger(n) || n < 0 || n > 255) return false;
    out[at + i] = n;
  }
  return true;
}

/** An address as bytes (4 or 16), or undefined when it is not an IP address. */
export function parseAddress(text: string): Parsed | undefined {
  if (isIPv4(text)) {
    const bytes = new Uint8Array(4);
    return parseV4Into(text, bytes, 0) ? { family: 'IPv4', bytes } : undefined;
  }
  if (!isIPv6(text)) return undefined;
  const bytes = new Uint8Array(16);
  let body = text.toLowerCase();
  const zone = body.indexOf('%');
  if (zone >= 0) body = body.slice(0, zone);
  // An embedded IPv4 tail (::ffff:198.18.0.1) is two groups.
  let tail: Uint8Array | undefined;
  const lastColon = body.lastIndexOf(':');
  if (body.slice(lastColon + 1).includes('.')) {
    tail = new Uint8Array(4);
    if (!parseV4Into(body.slice(lastColon + 1), tail, 0)) return undefined;
    body = body.slice(0, lastColon + 1) + '0:0';
  }
  const [head = '', rest] = body.split('::') as [string, string | undefined];
  const groupsOf = (s: string): number[] =>
    s === '' ? [] : s.split(':').map((g) => parseInt(g, 16));
  const hi = groupsOf(head);
  const lo = rest === undefined ? [] : groupsOf(rest);
  const groups = [...hi, ...new Array<number>(8 - hi.length - lo.length).fill(0), ...lo];
  for (let i = 0; i < 8; i++) {
    const g = groups[i] ?? 0;
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  }
  if (tail !== undefined) bytes.set(tail, 12);
  return { family: 'IPv6', bytes };
}

/** RFC 5952 text: lower case, longest run of two or more zero groups as `::`. */
export function formatAddress(family: Family, bytes: Uint8Array): string {
  if (family === 'IPv4') return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(((bytes[2 * i] ?? 0) << 8) | (bytes[2 * i + 1] ?? 0));
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(':');
  if (bestAt < 0) return hex(groups);
  return `${hex(groups.slice(0, bestAt))}::${hex(groups.slice(bestAt + bestLen))}`;
}

export function familyOf(text: string): Family | undefined {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  return isIPv4(addr) ? 'IPv4' : isIPv6(addr) ? 'IPv6' : undefined;
}

export function canonicalAddress(text: string): string | undefined {
  const p = parseAddress(text);
  return p === undefined ? undefined : formatAddress(p.family, p.bytes);
}

/** `addr/len` with the host bits cleared and the address in canonical form; a bare address is a host prefix. */
export function canonicalPrefix(text: string): string | undefined {
  const slash = text.indexOf('/');
  const p = parseAddress(slash < 0 ? text : text.slice(0, slash));
  if (p === undefined) return undefined;
  const max = p.bytes.length * 8;
  const lenText = slash < 0 ? String(max) : text.slice(slash + 1);
  if (!/^[0-9]{1,3}$/.test(lenText)) return undefined;
  const len = Number(lenText);
  if (len > max) return undefined;
  const bytes = p.bytes.slice();
  for (let bit = len; bit < max; bit++)
    bytes[bit >> 3] = (bytes[bit >> 3] ?? 0) & ~(0x80 >> (bit & 7));
  return `${formatAddress(p.family, bytes)}/${len}`;
}

/** The /32 or /128 prefix of one address, canonical. */
export function hostPrefix(address: string): string | undefined {
  const p = parseAddress(address);
  if (p === undefined) return undefined;
  return `${formatAddress(p.family, p.bytes)}/${p.bytes.length * 8}`;
}
