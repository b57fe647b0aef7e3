// rtnetlink message encoding and decoding (pure: bytes in, bytes out). Layouts from
// <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>, <linux/if_addr.h>,
// <linux/neighbour.h>, <linux/veth.h>; all host byte order (little-endian here).
import { Family, formatIp, formatMac, parseIp, parseMac } from '@dyad/netaddr';

export const NLMSG_HDRLEN = 16;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
/** In an error message: the original request was cut to its header; TLVs follow. */
export const NLM_F_CAPPED = 0x100;
export const NLM_F_ACK_TLVS = 0x200;
export const NLMSGERR_ATTR_MSG = 1;

export const RTM = {
  NEWLINK: 16,
  DELLINK: 17,
  GETLINK: 18,
  NEWADDR: 20,
  DELADDR: 21,
  GETADDR: 22,
  NEWROUTE: 24,
  DELROUTE: 25,
  GETROUTE: 26,
  NEWNEIGH: 28,
  DELNEIGH: 29,
  GETNEIGH: 30,
} as const;

export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_INET6 = 10;

export const IFF_UP = 0x1;
export const IFLA = {
  ADDRESS: 1,
  IFNAME: 3,
  MTU: 4,
  LINK: 5,
  OPERSTATE: 16,
  LINKINFO: 18,
  NET_NS_FD: 28,
  EXT_MASK: 29,
} as const;
export const IFLA_INFO_KIND = 1;
export const IFLA_INFO_DATA = 2;
export const VETH_INFO_PEER = 1;
/** IFLA_EXT_MASK bit that stops per-VF stats bloating link dumps. */
export const RTEXT_FILTER_SKIP_STATS = 1 << 3;

export const IFA = { ADDRESS: 1, LOCAL: 2, FLAGS: 8 } as const;
export const IFA_F_NODAD = 0x02;
export const IFA_F_PERMANENT = 0x80;
export const IFA_F_NOPREFIXROUTE = 0x200;

export const RTA = { DST: 1, OIF: 4, GATEWAY: 5, PRIORITY: 6, TABLE: 15 } as const;
export const RT_TABLE_MAIN = 254;
export const RTN_UNICAST = 1;
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_LINK = 253;
export const RT_SCOPE_HOST = 254;
export const RTNH_F_ONLINK = 0x4;
/** rtm_protocol of the routes Dyad adds, so they can be told from anyone else's. */
export const RTPROT_DYAD = 201;
/** rtm_protocol of the routes to other nodes' pod blocks (node-routes.ts). */
export const RTPROT_DYAD_NODE = 202;

export const NDA = { DST: 1, LLADDR: 2 } as const;
export const NUD_PERMANENT = 0x80;

/** One attribute: a raw value or nested attributes. */
export interface Attr {
  readonly type: number;
  readonly value: Buffer | readonly Attr[];
}

const align4 = (n: number) => (n + 3) & ~3;

export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return b;
}

export function cstr(s: string): Buffer {
  return Buffer.concat([Buffer.from(s), Buffer.from([0])]);
}

export function macBytes(mac: string): Buffer {
  return Buffer.from(parseMac(mac));
}

export function formatMacBytes(b: Buffer): string {
  return formatMac(b);
}

/** Address bytes in network order (4 or 16) and its AF_* family. */
export function ipBytes(address: string): { family: number; bytes: Buffer } {
  const ip = parseIp(address);
  return ip.family === Family.IPv4
    ? { family: AF_INET, bytes: Buffer.from(ip.bytes.subarray(0, 4)) }
    : { family: AF_INET6, bytes: Buffer.from(ip.bytes) };
}

export function formatIpBytes(b: Buffer): string {
  return b.length === 4 ? formatIp(Family.IPv4, b) : formatIp(Family.IPv6, b);
}

export function encodeAttrs(attrs: readonly Attr[]): Buffer {
  const parts: Buffer[] = [];
  for (const a of attrs) {
    const value = Buffer.isBuffer(a.value) ? a.value : encodeAttrs(a.value);
    const len = 4 + value.length;
    const b = Buffer.alloc(align4(len));
    b.writeUInt16LE(len, 0);
    b.writeUInt16LE(a.type, 2);
    value.copy(b, 4);
    parts.push(b);
  }
  return Buffer.concat(parts);
}

/** Attributes of a message body from `offset`; a type seen twice keeps the first. */
export function decodeAttrs(buf: Buffer, offset = 0, end = buf.length): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let off = offset;
  while (off + 4 <= end) {
    const len = buf.readUInt16LE(off);
    const type = buf.readUInt16LE(off + 2) & 0x3fff; // strip NLA_F_NESTED / NLA_F_NET_BYTEORDER
    if (len < 4 || off + len > end) break;
    if (!out.has(type)) out.set(type, buf.subarray(off + 4, off + len));
    off += align4(len);
  }
  return out;
}

export function nlmsg(type: number, flags: number, seq: number, body: Buffer): Buffer {
  const b = Buffer.alloc(NLMSG_HDRLEN + body.length);
  b.writeUInt32LE(b.length, 0);
  b.writeUInt16LE(type, 4);
  b.writeUInt16LE(flags, 6);
  b.writeUInt32LE(seq >>> 0, 8);
  b.writeUInt32LE(0, 12);
  body.copy(b, NLMSG_HDRLEN);
  return b;
}

export interface RawMessage {
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  readonly payload: Buffer;
}

export function decodeMessages(buf: Buffer): RawMessage[] {
  const out: RawMessage[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > buf.length) break;
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** An NLMSG_ERROR payload: 0 is an ACK, else -errno, with the kernel's extended-ack text. */
export function decodeError(m: RawMessage): { errno: number; message?: string } {
  const errno = -m.payload.readInt32LE(0);
  if ((m.flags & NLM_F_ACK_TLVS) === 0) return { errno };
  // the echoed request: just its header when capped, else the whole thing
  const origLen = m.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : m.payload.readUInt32LE(4);
  const attrs = decodeAttrs(m.payload, 4 + align4(origLen));
  const msg = attrs.get(NLMSGERR_ATTR_MSG);
  return msg ? { errno, message: msg.toString('utf8').replace(/\0.*$/s, '') } : { errno };
}

// ---- fixed headers ----

export function ifinfomsg(fields: {
  family?: number;
  index?: number;
  flags?: number;
  change?: number;
}): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(fields.family ?? AF_UNSPEC, 0);
  b.writeInt32LE(fields.index ?? 0, 4);
  b.writeUInt32LE(fields.flags ?? 0, 8);
  b.writeUInt32LE(fields.change ?? 0, 12);
  return b;
}

export function ifaddrmsg(f: {
  family: number;
  prefixLen: number;
  flags?: number;
  scope?: number;
  index: number;
}): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(f.family, 0);
  b.writeUInt8(f.prefixLen, 1);
  b.writeUInt8((f.flags ?? 0) & 0xff, 2);
  b.writeUInt8(f.scope ?? RT_SCOPE_UNIVERSE, 3);
  b.writeUInt32LE(f.index, 4);
  return b;
}

export function rtmsg(f: {
  family: number;
  dstLen: number;
  table?: number;
  protocol?: number;
  scope?: number;
  type?: number;
  flags?: number;
}): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(f.family, 0);
  b.writeUInt8(f.dstLen, 1);
  b.writeUInt8(0, 2); // src_len
  b.writeUInt8(0, 3); // tos
  b.writeUInt8(f.table ?? RT_TABLE_MAIN, 4);
  b.writeUInt8(f.protocol ?? RTPROT_DYAD, 5);
  b.writeUInt8(f.scope ?? RT_SCOPE_UNIVERSE, 6);
  b.writeUInt8(f.type ?? RTN_UNICAST, 7);
  b.writeUInt32LE(f.flags ?? 0, 8);
  return b;
}

export function ndmsg(f: { family: number; index: number; state: number }): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(f.family, 0);
  b.writeInt32LE(f.index, 4);
  b.writeUInt16LE(f.state, 8);
  return b;
}

// ---- requests ----

export interface VethSpec {
  readonly name: string;
  readonly mac: string;
  readonly mtu: number;
  readonly peer: {
    readonly name: string;
    readonly mac: string;
    /** Open fd of the netns the peer is created in. */
    readonly netnsFd: number;
  };
}

/** One RTM_NEWLINK that makes both ends, the peer already in the pod netns. The host end comes
 *  up with it; the peer cannot (veth_open refuses while its own peer is not registered yet, with
 *  ENOTCONN), so the pod side sets it up afterwards. */
export function newVethBody(s: VethSpec): Buffer {
  const peer = Buffer.concat([
    ifinfomsg({}),
    encodeAttrs([
      { type: IFLA.IFNAME, value: cstr(s.peer.name) },
      { type: IFLA.ADDRESS, value: macBytes(s.peer.mac) },
      { type: IFLA.MTU, value: u32(s.mtu) },
      { type: IFLA.NET_NS_FD, value: u32(s.peer.netnsFd) },
    ]),
  ]);
  return Buffer.concat([
    ifinfomsg({ flags: IFF_UP, change: IFF_UP }),
    encodeAttrs([
      { type: IFLA.IFNAME, value: cstr(s.name) },
      { type: IFLA.ADDRESS, value: macBytes(s.mac) },
      { type: IFLA.MTU, value: u32(s.mtu) },
      {
        type: IFLA.LINKINFO,
        value: [
          { type: IFLA_INFO_KIND, value: cstr('veth') },
          { type: IFLA_INFO_DATA, value: [{ type: VETH_INFO_PEER, value: peer }] },
        ],
      },
    ]),
  ]);
}

export function linkByNameBody(name: string): Buffer {
  return Buffer.concat([
    ifinfomsg({}),
    encodeAttrs([
      { type: IFLA.IFNAME, value: cstr(name) },
      { type: IFLA.EXT_MASK, value: u32(RTEXT_FILTER_SKIP_STATS) },
    ]),
  ]);
}

export function linkDumpBody(): Buffer {
  return Buffer.concat([
    ifinfomsg({}),
    encodeAttrs([{ type: IFLA.EXT_MASK, value: u32(RTEXT_FILTER_SKIP_STATS) }]),
  ]);
}

export function addrBody(a: {
  index: number;
  address: string;
  prefixLen: number;
  nodad?: boolean;
  noPrefixRoute?: boolean;
  scope?: number;
}): Buffer {
  const ip = ipBytes(a.address);
  const flags =
    IFA_F_PERMANENT | (a.nodad ? IFA_F_NODAD : 0) | (a.noPrefixRoute ? IFA_F_NOPREFIXROUTE : 0);
  return Buffer.concat([
    ifaddrmsg({
      family: ip.family,
      prefixLen: a.prefixLen,
      flags,
      index: a.index,
      ...(a.scope === undefined ? {} : { scope: a.scope }),
    }),
    encodeAttrs([
      { type: IFA.LOCAL, value: ip.bytes },
      { type: IFA.ADDRESS, value: ip.bytes },
      { type: IFA.FLAGS, value: u32(flags) },
    ]),
  ]);
}

export function routeBody(r: {
  dst: string;
  dstLen: number;
  /** Undefined: the kernel picks the device that reaches the gateway. */
  oif?: number;
  gateway?: string;
  onlink?: boolean;
  scope?: number;
  protocol?: number;
}): Buffer {
  const dst = ipBytes(r.dst);
  const attrs: Attr[] = [];
  if (r.dstLen > 0) attrs.push({ type: RTA.DST, value: dst.bytes });
  if (r.oif !== undefined) attrs.push({ type: RTA.OIF, value: u32(r.oif) });
  if (r.gateway !== undefined) attrs.push({ type: RTA.GATEWAY, value: ipBytes(r.gateway).bytes });
  return Buffer.concat([
    rtmsg({
      family: dst.family,
      dstLen: r.dstLen,
      ...(r.protocol !== undefined ? { protocol: r.protocol } : {}),
      scope: r.scope ?? (r.gateway === undefined ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE),
      flags: r.onlink ? RTNH_F_ONLINK : 0,
    }),
    encodeAttrs(attrs),
  ]);
}

export function neighBody(n: { index: number; address: string; mac: string }): Buffer {
  const ip = ipBytes(n.address);
  return Buffer.concat([
    ndmsg({ family: ip.family, index: n.index, state: NUD_PERMANENT }),
    encodeAttrs([
      { type: NDA.DST, value: ip.bytes },
      { type: NDA.LLADDR, value: macBytes(n.mac) },
    ]),
  ]);
}

// ---- decoded objects ----

export interface Link {
  readonly index: number;
  readonly name: string;
  readonly mac?: string;
  readonly flags: number;
  readonly mtu?: number;
  readonly kind?: string;
  /** For a veth: the peer's ifindex (in the peer's netns). */
  readonly link?: number;
}

export function decodeLink(payload: Buffer): Link {
  const index = payload.readInt32LE(4);
  const flags = payload.readUInt32LE(8);
  const attrs = decodeAttrs(payload, 16);
  const name = attrs.get(IFLA.IFNAME)?.toString('utf8').replace(/\0.*$/s, '') ?? '';
  const mac = attrs.get(IFLA.ADDRESS);
  const mtu = attrs.get(IFLA.MTU);
  const link = attrs.get(IFLA.LINK);
  const info = attrs.get(IFLA.LINKINFO);
  const kind = info ? decodeAttrs(info).get(IFLA_INFO_KIND) : undefined;
  return {
    index,
    name,
    flags,
    ...(mac?.length === 6 ? { mac: formatMacBytes(mac) } : {}),
    ...(mtu ? { mtu: mtu.readUInt32LE(0) } : {}),
    ...(link ? { link: link.readInt32LE(0) } : {}),
    ...(kind ? { kind: kind.toString('utf8').replace(/\0.*$/s, '') } : {}),
  };
}

export interface Address {
  readonly index: number;
  readonly family: number;
  readonly prefixLen: number;
  readonly address: string;
  readonly flags: number;
}

export function decodeAddress(payload: Buffer): Address {
  const attrs = decodeAttrs(payload, 8);
  const raw = attrs.get(IFA.LOCAL) ?? attrs.get(IFA.ADDRESS) ?? Buffer.alloc(0);
  const f = attrs.get(IFA.FLAGS);
  return {
    family: payload.readUInt8(0),
    prefixLen: payload.readUInt8(1),
    index: payload.readUInt32LE(4),
    flags: f ? f.readUInt32LE(0) : payload.readUInt8(2),
    address: raw.length === 4 || raw.length === 16 ? formatIpBytes(raw) : '',
  };
}

export interface Route {
  readonly family: number;
  readonly dstLen: number;
  readonly dst?: string;
  readonly gateway?: string;
  readonly oif?: number;
  readonly table: number;
  readonly protocol: number;
  readonly flags: number;
}

export function decodeRoute(payload: Buffer): Route {
  const attrs = decodeAttrs(payload, 12);
  const dst = attrs.get(RTA.DST);
  const gw = attrs.get(RTA.GATEWAY);
  const oif = attrs.get(RTA.OIF);
  const table = attrs.get(RTA.TABLE);
  return {
    family: payload.readUInt8(0),
    dstLen: payload.readUInt8(1),
    table: table ? table.readUInt32LE(0) : payload.readUInt8(4),
    protocol: payload.readUInt8(5),
    flags: payload.readUInt32LE(8),
    ...(dst ? { dst: formatIpBytes(dst) } : {}),
    ...(gw ? { gateway: formatIpBytes(gw) } : {}),
    ...(oif ? { oif: oif.readUInt32LE(0) } : {}),
  };
}

export interface Neighbour {
  readonly index: number;
  readonly family: number;
  readonly address: string;
  readonly mac?: string;
  readonly state: number;
}

export function decodeNeighbour(payload: Buffer): Neighbour {
  const attrs = decodeAttrs(payload, 12);
  const dst = attrs.get(NDA.DST);
  const ll = attrs.get(NDA.LLADDR);
  return {
    family: payload.readUInt8(0),
    index: payload.readInt32LE(4),
    state: payload.readUInt16LE(8),
    address: dst ? formatIpBytes(dst) : '',
    ...(ll?.length === 6 ? { mac: formatMacBytes(ll) } : {}),
  };
}
