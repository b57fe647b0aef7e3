// Pure CIDR arithmetic: the apiserver serving cert must carry the first IP of each service range
// (the `kubernetes` Service's ClusterIP), and the advertise address must match the primary family.
import { formatIp, ipFromBigInt, ipToBigInt, tryParseIp } from '@dyad/netaddr';

export type IpFamily = 'IPv4' | 'IPv6';

function parseIp(text: string, family: IpFamily): bigint {
  const ip = tryParseIp(text);
  if (ip === undefined || ip.family !== (family === 'IPv4' ? 4 : 6)) {
    throw new Error(`bad ${family} address ${text}`);
  }
  return ipToBigInt(ip);
}

function formatIpValue(family: IpFamily, value: bigint): string {
  const ip = ipFromBigInt(family === 'IPv4' ? 4 : 6, value);
  return formatIp(ip.family, ip.bytes);
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
  const value = parseIp(address, family);
  const hostBits = BigInt(bits - prefix);
  const network = (value >> hostBits) << hostBits;
  return { family, network, prefix };
}

/** The first usable address of a range, e.g. 198.18.128.0/20 -> 198.18.128.1. */
export function firstAddress(cidr: string): string {
  const parsed = parseCidr(cidr);
  const value = parsed.network + 1n;
  return formatIpValue(parsed.family, value);
}

/** Splits a comma-separated dual-stack range flag value. */
export function splitCidrs(ranges: string): string[] {
  return ranges
    .split(',')
    .map((r) => r.trim())
    .filter((r) => r.length > 0);
}
