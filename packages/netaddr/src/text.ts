import { AddressError } from './errors.ts';
import { Family } from './family.ts';

export interface IpBytes {
  readonly family: Family;
  /** 16 bytes, network order; IPv4 fills the first 4, the rest stay zero. */
  readonly bytes: Uint8Array;
}

// The one parser of address text in Dyad: the datapath codecs, ipam, the router and the test bed
// all read addresses here, so they agree on what is an address. Hand-rolled char-code parsers:
// map updates encode tens of thousands of addresses per batch, and regex/split based parsing
// cost more than the syscall itself.

const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[48 + c] = c;
for (let c = 0; c < 6; c++) {
  HEX[97 + c] = 10 + c;
  HEX[65 + c] = 10 + c;
}

function hexVal(c: number): number {
  return c < 256 ? (HEX[c] as number) : -1;
}

/** Dotted quad from s[from..to) into out[at..at+4); false when malformed. */
function v4Into(s: string, from: number, to: number, out: Uint8Array, at: number): boolean {
  let part = 0;
  let val = 0;
  let digits = 0;
  for (let i = from; i <= to; i++) {
    const c = i === to ? 46 : s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || part > 3) return false;
      out[at + part++] = val;
      val = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && val === 0) return false; // leading zero
      val = val * 10 + (c - 48);
      if (val > 255 || ++digits > 3) return false;
    } else {
      return false;
    }
  }
  return part === 4;
}

const groups = new Uint16Array(8);

function v6Into(s: string, end: number, out: Uint8Array, at: number): boolean {
  let n = 0;
  let gap = -1;
  let i = 0;
  if (end >= 2 && s.charCodeAt(0) === 58) {
    if (s.charCodeAt(1) !== 58) return false;
    gap = 0;
    i = 2;
    if (i === end) {
      out.fill(0, at, at + 16);
      return true;
    }
  }
  for (;;) {
    const start = i;
    let val = 0;
    while (i < end && i - start < 5) {
      const h = hexVal(s.charCodeAt(i));
      if (h < 0) break;
      val = (val << 4) | h;
      i++;
    }
    if (i < end && s.charCodeAt(i) === 46) {
      // embedded IPv4 tail takes the last two groups
      if (n > 6) return false;
      const tmp = new Uint8Array(4);
      if (!v4Into(s, start, end, tmp, 0)) return false;
      groups[n++] = ((tmp[0] ?? 0) << 8) | (tmp[1] ?? 0);
      groups[n++] = ((tmp[2] ?? 0) << 8) | (tmp[3] ?? 0);
      break;
    }
    const len = i - start;
    if (len === 0 || len > 4 || n === 8) return false;
    groups[n++] = val;
    if (i === end) break;
    if (s.charCodeAt(i) !== 58) return false;
    i++;
    if (i < end && s.charCodeAt(i) === 58) {
      if (gap >= 0) return false;
      gap = n;
      i++;
      if (i === end) break;
    } else if (i === end) {
      return false;
    }
  }
  if (gap < 0 ? n !== 8 : n > 7) return false;
  // groups before the gap, zeros, groups after it
  const head = gap < 0 ? 8 : gap;
  let k = 0;
  for (; k < head; k++) {
    const v = groups[k] as number;
    out[at + k * 2] = v >> 8;
    out[at + k * 2 + 1] = v & 0xff;
  }
  const zeroEnd = 8 - (n - head);
  for (; k < zeroEnd; k++) {
    out[at + k * 2] = 0;
    out[at + k * 2 + 1] = 0;
  }
  for (let g = head; k < 8; k++, g++) {
    const v = groups[g] as number;
    out[at + k * 2] = v >> 8;
    out[at + k * 2 + 1] = v & 0xff;
  }
  return true;
}

/** Parses into out[at..at+16) (IPv4 zero-padded); returns the family. */
export function parseIpInto(address: string, out: Uint8Array, at = 0): Family {
  if (address.indexOf(':') < 0) {
    for (let i = 4; i < 16; i++) out[at + i] = 0;
    if (v4Into(address, 0, address.length, out, at)) return Family.IPv4;
  } else if (v6Into(address, address.length, out, at)) {
    // No zone index ('%eth0'): it names a link on one host, never a pod's or a node's address.
    return Family.IPv6;
  }
  throw new AddressError(`not an IP address: ${address}`);
}

export function parseIp(address: string): IpBytes {
  const bytes = new Uint8Array(16);
  const family = parseIpInto(address, bytes);
  return { family, bytes };
}

/** `parseIp` for callers to whom malformed text is an answer, not an error. */
export function tryParseIp(address: string): IpBytes | undefined {
  try {
    return parseIp(address);
  } catch (err) {
    if (err instanceof AddressError) return undefined;
    throw err;
  }
}

/** RFC 5952 text: lowercase, longest zero run (2+ groups) compressed. */
export function formatIp(family: Family, bytes: Uint8Array): string {
  if (family === Family.IPv4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  // RFC 5952: the longest run of two or more zero groups (the first of equals) becomes '::'.
  // Written without intermediate arrays: flow export formats two addresses per event.
  const g = formatGroups;
  for (let i = 0; i < 8; i++) g[i] = ((bytes[i * 2] ?? 0) << 8) | (bytes[i * 2 + 1] ?? 0);
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestAt) {
      out += '::';
      i += bestLen - 1;
      continue;
    }
    if (out !== '' && !out.endsWith(':')) out += ':';
    out += (g[i] ?? 0).toString(16);
  }
  return out;
}

/** formatIp's scratch: one address's eight groups. */
const formatGroups = new Uint16Array(8);

/** Writes a MAC into out[at..at+6); throws on anything but xx:xx:xx:xx:xx:xx. */
export function parseMacInto(mac: string, out: Uint8Array, at: number): void {
  if (mac.length !== 17) throw new AddressError(`not a MAC: ${mac}`);
  for (let i = 0; i < 6; i++) {
    const hi = hexVal(mac.charCodeAt(i * 3));
    const lo = hexVal(mac.charCodeAt(i * 3 + 1));
    if (hi < 0 || lo < 0 || (i < 5 && mac.charCodeAt(i * 3 + 2) !== 58))
      throw new AddressError(`not a MAC: ${mac}`);
    out[at + i] = (hi << 4) | lo;
  }
}

export function parseMac(mac: string): Uint8Array {
  const out = new Uint8Array(6);
  parseMacInto(mac, out, 0);
  return out;
}

export function formatMac(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, 6), (b) => b.toString(16).padStart(2, '0')).join(':');
}
