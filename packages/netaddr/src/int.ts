import { Family } from './family.ts';
import type { IpBytes } from './text.ts';

/** The address as an unsigned integer of 32 or 128 bits, for arithmetic on ranges. */
export function ipToBigInt(ip: IpBytes): bigint {
  let v = 0n;
  const n = ip.family === Family.IPv4 ? 4 : 16;
  for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(ip.bytes[i] ?? 0);
  return v;
}

/** The inverse of `ipToBigInt`; bits above the family's width are dropped. */
export function ipFromBigInt(family: Family, value: bigint): IpBytes {
  const bytes = new Uint8Array(16);
  const n = family === Family.IPv4 ? 4 : 16;
  let v = value;
  for (let i = n - 1; i >= 0; i--) {
    bytes[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return { family, bytes };
}
