// The apiserver serving cert must carry the first IP of each service range (the `kubernetes`
// Service's ClusterIP), and the advertise address must match the primary family.
import { formatIp, ipFromBigInt, ipToBigInt, parsePrefixLenient } from '@dyad/netaddr';

/** The first usable address of a range, e.g. 198.18.128.0/20 -> 198.18.128.1. Host bits in the
 *  text are masked, as kube-apiserver reads the flag. */
export function firstAddress(cidr: string): string {
  const p = parsePrefixLenient(cidr.trim());
  const ip = ipFromBigInt(p.family, ipToBigInt(p) + 1n);
  return formatIp(ip.family, ip.bytes);
}

/** Splits a comma-separated dual-stack range flag value. */
export function splitCidrs(ranges: string): string[] {
  return ranges
    .split(',')
    .map((r) => r.trim())
    .filter((r) => r.length > 0);
}
