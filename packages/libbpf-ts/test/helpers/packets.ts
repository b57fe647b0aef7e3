// Frames for crafted-packet tests, written byte by byte: Ethernet, IPv4/IPv6 (with extension
// and fragment headers), UDP, ICMP/ICMPv6. Checksums are real so the receiving stack would
// accept what the datapath lets through.
import { Family, parseIp, parseMac } from '@dyad/netaddr';

export const ETH_P_IP = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
export const NH = { HOPOPTS: 0, UDP: 17, ROUTING: 43, FRAGMENT: 44, ICMPV6: 58, DSTOPTS: 60 };

function sum16(b: Buffer, s = 0): number {
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  if (b.length % 2) s += (b[b.length - 1] ?? 0) << 8;
  return s;
}

function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff || 0xffff;
}

function addr(a: string): Buffer {
  const ip = parseIp(a);
  return Buffer.from(ip.family === Family.IPv4 ? ip.bytes.subarray(0, 4) : ip.bytes);
}

/** The pseudo-header sum of an upper-layer checksum (RFC 768 / RFC 8200 8.1). */
function pseudo(src: string, dst: string, proto: number, len: number): number {
  return sum16(Buffer.concat([addr(src), addr(dst)])) + proto + len;
}

export function eth(dstMac: string, srcMac: string, type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(14);
  h.set(parseMac(dstMac), 0);
  h.set(parseMac(srcMac), 6);
  h.writeUInt16BE(type, 12);
  return Buffer.concat([h, payload]);
}

export interface Ip4 {
  readonly src: string;
  readonly dst: string;
  readonly proto: number;
  readonly id?: number;
  /** fragment offset in 8-byte units */
  readonly offset?: number;
  readonly more?: boolean;
  readonly ttl?: number;
}

export function ipv4(h: Ip4, payload: Buffer): Buffer {
  const b = Buffer.alloc(20);
  b[0] = 0x45;
  b.writeUInt16BE(20 + payload.length, 2);
  b.writeUInt16BE(h.id ?? 0x4242, 4);
  b.writeUInt16BE(((h.more ? 1 : 0) << 13) | (h.offset ?? 0), 6);
  b[8] = h.ttl ?? 64;
  b[9] = h.proto;
  b.set(addr(h.src), 12);
  b.set(addr(h.dst), 16);
  b.writeUInt16BE(fold(sum16(b)), 10);
  return Buffer.concat([b, payload]);
}

export function ipv6(
  h: { src: string; dst: string; next: number; hopLimit?: number },
  payload: Buffer,
): Buffer {
  const b = Buffer.alloc(40);
  b[0] = 0x60;
  b.writeUInt16BE(payload.length, 4);
  b[6] = h.next;
  b[7] = h.hopLimit ?? 64;
  b.set(addr(h.src), 8);
  b.set(addr(h.dst), 24);
  return Buffer.concat([b, payload]);
}

/** An 8-byte destination-options (or hop-by-hop) header holding only padding. */
export function optionsHeader(next: number): Buffer {
  const b = Buffer.alloc(8);
  b[0] = next;
  b[1] = 0;
  b[2] = 1; // PadN
  b[3] = 4;
  return b;
}

/** A hop-by-hop header with the router alert option (MLD, RFC 2711). */
export function routerAlert(next: number): Buffer {
  return Buffer.from([next, 0, 5, 2, 0, 0, 1, 0]);
}

/** IPv6 fragment header; offset in 8-byte units. */
export function fragmentHeader(next: number, offset: number, more: boolean, id: number): Buffer {
  const b = Buffer.alloc(8);
  b[0] = next;
  b.writeUInt16BE((offset << 3) | (more ? 1 : 0), 2);
  b.writeUInt32BE(id, 4);
  return b;
}

/** UDP header and payload; `length` overrides the length field (a datagram split in fragments). */
export function udp(
  src: string,
  dst: string,
  sport: number,
  dport: number,
  payload: Buffer,
  length = 8 + payload.length,
): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b.writeUInt16BE(length, 4);
  const seg = Buffer.concat([b, payload]);
  if (length === seg.length) seg.writeUInt16BE(fold(sum16(seg, pseudo(src, dst, 17, length))), 6);
  return seg;
}

/** ICMP (IPv4: no pseudo-header) or ICMPv6 message: type, code, 4 bytes of rest, body. */
export function icmp(
  v6: { src: string; dst: string } | undefined,
  type: number,
  code: number,
  body: Buffer,
  rest: Buffer = Buffer.alloc(4),
): Buffer {
  const b = Buffer.alloc(4);
  b[0] = type;
  b[1] = code;
  const m = Buffer.concat([b, rest, body]);
  const s = v6 ? sum16(m, pseudo(v6.src, v6.dst, 58, m.length)) : sum16(m);
  m.writeUInt16BE(fold(s), 2);
  return m;
}
