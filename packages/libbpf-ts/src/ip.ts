import { isIPv4, isIPv6 } from 'node:net';
import { CodecError } from './errors.ts';

export type IpFamily = 4 | 6;

export interface IpBytes {
  readonly family: IpFamily;
  /** 16 bytes, network order; IPv4 fills the first 4, the rest stay zero. */
  readonly bytes: Uint8Array;
}

export interface IpPrefix extends IpBytes {
  readonly length: number;
}

function parseV4(s: string, out: Uint8Array, at: number): void {
  const parts = s.split('.');
  parts.forEach((p, i) => (out[at + i] = Number(p)));
}

export function parseIp(address: string): IpBytes {
  const bytes = new Uint8Array(16);
  if (isIPv4(address)) {
    parseV4(address, bytes, 0);
    return { family: 4, bytes };
  }
  const zone = address.indexOf('%');
  const a = zone >= 0 ? address.slice(0, zone) : address;
  if (!isIPv6(a)) throw new CodecError(`not an IP address: ${address}`);
  let head = a;
  let tailV4: string | undefined;
  const lastColon = a.lastIndexOf(':');
  if (a.slice(lastColon + 1).includes('.')) {
    tailV4 = a.slice(lastColon + 1);
    head = a.slice(0, lastColon + 1) + '0:0';
  }
  const [left = '', right] = head.split('::');
  const l = left === '' ? [] : left.split(':');
  const r = right === undefined ? [] : right === '' ? [] : right.split(':');
  const groups =
    right === undefined ? l : [...l, ...new Array<string>(8 - l.length - r.length).fill('0'), ...r];
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    bytes[i * 2] = v >> 8;
    bytes[i * 2 + 1] = v & 0xff;
  });
  if (tailV4 !== undefined) parseV4(tailV4, bytes, 12);
  return { family: 6, bytes };
}

/** RFC 5952 text: lowercase, longest zero run (2+ groups) compressed. */
export function formatIp(family: IpFamily, bytes: Uint8Array): string {
  if (family === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(((bytes[i * 2] ?? 0) << 8) | (bytes[i * 2 + 1] ?? 0));
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
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  if (bestAt < 0) return hex(g);
  return `${hex(g.slice(0, bestAt))}::${hex(g.slice(bestAt + bestLen))}`;
}

/** Zeroes every bit past `length`, so equal prefixes encode to equal keys. */
export function maskBytes(bytes: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(16);
  const full = length >> 3;
  out.set(bytes.subarray(0, full), 0);
  const rem = length & 7;
  if (rem) out[full] = (bytes[full] ?? 0) & (0xff << (8 - rem)) & 0xff;
  return out;
}

/** "198.18.0.0/24", "fd00::/8"; a bare address is a host prefix (/32 or /128). */
export function parsePrefix(prefix: string): IpPrefix {
  const slash = prefix.indexOf('/');
  const addr = slash < 0 ? prefix : prefix.slice(0, slash);
  const ip = parseIp(addr);
  const max = ip.family === 4 ? 32 : 128;
  const lenText = slash < 0 ? String(max) : prefix.slice(slash + 1);
  const length = Number(lenText);
  if (!/^\d+$/.test(lenText) || length > max)
    throw new CodecError(`bad prefix length in ${prefix}`);
  return { family: ip.family, bytes: maskBytes(ip.bytes, length), length };
}

export function formatPrefix(p: IpPrefix): string {
  return `${formatIp(p.family, p.bytes)}/${p.length}`;
}

export function parseMac(mac: string): Uint8Array {
  const parts = mac.split(':');
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{2}$/.test(p)))
    throw new CodecError(`not a MAC: ${mac}`);
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

export function formatMac(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, 6), (b) => b.toString(16).padStart(2, '0')).join(':');
}
