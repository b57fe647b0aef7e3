// Pure CIDR arithmetic: the apiserver serving cert must carry the first IP of each service range
// (the `kubernetes` Service's ClusterIP), and the advertise address must match the primary family.

export type IpFamily = 'IPv4' | 'IPv6';

function parseIpv4(text: string): bigint {
  const parts = text.split('.');
  if (parts.length !== 4) throw new Error(`bad IPv4 address ${text}`);
  let value = 0n;
  for (const part of parts) {
    const n = Number(part);
    if (!/^\d{1,3}$/.test(part) || n > 255) throw new Error(`bad IPv4 address ${text}`);
    value = (value << 8n) | BigInt(n);
  }
  return value;
}

function parseIpv6(text: string): bigint {
  const halves = text.split('::');
  if (halves.length > 2) throw new Error(`bad IPv6 address ${text}`);
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const missing = 8 - head.length - tail.length;
  if ((halves.length === 2 && missing < 1) || (halves.length === 1 && missing !== 0)) {
    throw new Error(`bad IPv6 address ${text}`);
  }
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail];
  let value = 0n;
  for (const group of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(group)) throw new Error(`bad IPv6 address ${text}`);
    value = (value << 16n) | BigInt(parseInt(group, 16));
  }
  return value;
}

function formatIpv4(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
}

function formatIpv6(value: bigint): string {
  const groups: string[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n)
    groups.push(((value >> shift) & 0xffffn).toString(16));
  // Compress the longest run of zero groups (RFC 5952), as Go and openssl print it.
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < groups.length;) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > bestLength && j - i > 1) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (bestStart < 0) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLength).join(':')}`;
}

export interface Cidr {
  family: IpFamily;
  network: bigint;
  prefix: number;
}

export function parseCidr(text: string): Cidr {
  const [address, prefixText] = text.trim().split('/');
  if (address === undefined || prefixText === undefined) throw new Error(`bad CIDR ${text}`);
  const family: IpFamily = address.includes(':') ? 'IPv6' : 'IPv4';
  const bits = family === 'IPv4' ? 32 : 128;
  const prefix = Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > bits)
    throw new Error(`bad CIDR prefix in ${text}`);
  const value = family === 'IPv4' ? parseIpv4(address) : parseIpv6(address);
  const hostBits = BigInt(bits - prefix);
  const network = (value >> hostBits) << hostBits;
  return { family, network, prefix };
}

/** The first usable address of a range, e.g. 198.18.128.0/20 -> 198.18.128.1. */
export function firstAddress(cidr: string): string {
  const parsed = parseCidr(cidr);
  const value = parsed.network + 1n;
  return parsed.family === 'IPv4' ? formatIpv4(value) : formatIpv6(value);
}

/** Splits a comma-separated dual-stack range flag value. */
export function splitCidrs(ranges: string): string[] {
  return ranges
    .split(',')
    .map((r) => r.trim())
    .filter((r) => r.length > 0);
}
