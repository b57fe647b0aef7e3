import { mapCodec, structCodec } from '../codec.ts';
import type { Codec, MapCodec } from '../codec.ts';
import { defineLayout, fieldAt } from '../layout.ts';
import type { StructValue } from '../layout.ts';
import {
  FamilyVersion,
  formatIp,
  formatPrefix,
  maskBytes,
  parseIp,
  parseIpInto,
  parsePrefixLenient,
  parsePrefixInto,
} from '@dyad/netaddr';
import { IpcachePrefix, familyOfTag } from './constants.ts';
import { u32At, u8At, zeroAt } from './write.ts';

/** bpf/include/dyad/map_ipcache.h */
export const ipcacheKeyLayout = defineLayout('dy_ipcache_key', 24, [
  { name: 'prefixlen', offset: 0, kind: 'u32' },
  { name: 'family', offset: 4, kind: 'u8' },
  { name: 'pad', offset: 5, kind: 'pad', length: 3 },
  { name: 'addr', offset: 8, kind: 'bytes', length: 16 },
] as const);

export const ipcacheInfoLayout = defineLayout('dy_ipcache_info', 28, [
  { name: 'identity', offset: 0, kind: 'u32' },
  { name: 'node_id', offset: 4, kind: 'u32' },
  { name: 'node_family', offset: 8, kind: 'u8' },
  { name: 'flags', offset: 9, kind: 'u8' },
  { name: 'pad', offset: 10, kind: 'pad', length: 2 },
  { name: 'node_addr', offset: 12, kind: 'bytes', length: 16 },
] as const);

/** LPM bits before the address: the family byte and its padding (DY_IPCACHE_PREFIX_BASE). */
export const IPCACHE_PREFIX_BASE = IpcachePrefix.BASE;

export interface IpcacheKey {
  /** "198.18.1.0/24", "fd00:18:1::/64"; a bare address means /32 or /128. */
  readonly prefix: string;
}

export interface IpcacheInfo {
  readonly identity: number;
  readonly nodeId: number;
  /** Address of the node hosting the prefix (same family as the prefix for forwarding). */
  readonly nodeAddress?: string;
  /** IpcacheFlags bits */
  readonly flags: number;
}

/** The LPM key for a prefix: prefixlen counts the family tag, the address is masked. */
export function encodeIpcachePrefix(prefix: string): {
  prefixlen: number;
  family: number;
  addr: Uint8Array;
} {
  const p = parsePrefixLenient(prefix);
  return {
    prefixlen: IPCACHE_PREFIX_BASE + p.length,
    family: FamilyVersion[p.family],
    addr: p.bytes,
  };
}

/** Reference mapping to the plain struct; the fast encoders below must agree with it (tested). */
export function ipcacheKeyToStruct(k: IpcacheKey): StructValue<typeof ipcacheKeyLayout.fields> {
  return encodeIpcachePrefix(k.prefix);
}

export function ipcacheInfoToStruct(v: IpcacheInfo): StructValue<typeof ipcacheInfoLayout.fields> {
  const node = v.nodeAddress === undefined ? undefined : parseIp(v.nodeAddress);
  return {
    identity: v.identity,
    node_id: v.nodeId,
    node_family: node ? FamilyVersion[node.family] : 0,
    flags: v.flags,
    node_addr: node?.bytes ?? new Uint8Array(16),
  };
}

const keyStruct = structCodec(ipcacheKeyLayout);
const infoStruct = structCodec(ipcacheInfoLayout);
const K_PREFIXLEN = fieldAt(ipcacheKeyLayout, 'prefixlen', 'u32');
const K_FAMILY = fieldAt(ipcacheKeyLayout, 'family', 'u8');
const K_PAD = fieldAt(ipcacheKeyLayout, 'pad', 'pad', 3);
const K_ADDR = fieldAt(ipcacheKeyLayout, 'addr', 'bytes', 16);
const I_IDENTITY = fieldAt(ipcacheInfoLayout, 'identity', 'u32');
const I_NODE_ID = fieldAt(ipcacheInfoLayout, 'node_id', 'u32');
const I_NODE_FAMILY = fieldAt(ipcacheInfoLayout, 'node_family', 'u8');
const I_FLAGS = fieldAt(ipcacheInfoLayout, 'flags', 'u8');
const I_PAD = fieldAt(ipcacheInfoLayout, 'pad', 'pad', 2);
const I_NODE_ADDR = fieldAt(ipcacheInfoLayout, 'node_addr', 'bytes', 16);

export const ipcacheKeyCodec: Codec<IpcacheKey> = {
  size: ipcacheKeyLayout.size,
  layout: ipcacheKeyLayout,
  encodeInto(k, buf, off) {
    const p = parsePrefixInto(k.prefix, buf, off + K_ADDR);
    u32At(buf, off + K_PREFIXLEN, IPCACHE_PREFIX_BASE + (p & 0xff), 'prefixlen');
    buf[off + K_FAMILY] = p >> 8;
    zeroAt(buf, off + K_PAD, 3);
  },
  decode(buf, off) {
    const s = keyStruct.decode(buf, off);
    const length = s.prefixlen - IPCACHE_PREFIX_BASE;
    return {
      prefix: formatPrefix({
        family: familyOfTag(s.family),
        bytes: maskBytes(s.addr, length),
        length,
      }),
    };
  },
};

export const ipcacheInfoCodec: Codec<IpcacheInfo> = {
  size: ipcacheInfoLayout.size,
  layout: ipcacheInfoLayout,
  encodeInto(v, buf, off) {
    u32At(buf, off + I_IDENTITY, v.identity, 'identity');
    u32At(buf, off + I_NODE_ID, v.nodeId, 'nodeId');
    if (v.nodeAddress === undefined) {
      buf[off + I_NODE_FAMILY] = 0;
      zeroAt(buf, off + I_NODE_ADDR, 16);
    } else {
      buf[off + I_NODE_FAMILY] = FamilyVersion[parseIpInto(v.nodeAddress, buf, off + I_NODE_ADDR)];
    }
    u8At(buf, off + I_FLAGS, v.flags, 'flags');
    zeroAt(buf, off + I_PAD, 2);
  },
  decode(buf, off) {
    const s = infoStruct.decode(buf, off);
    const base = { identity: s.identity, nodeId: s.node_id, flags: s.flags };
    return s.node_family === 0
      ? base
      : { ...base, nodeAddress: formatIp(familyOfTag(s.node_family), s.node_addr) };
  },
};

export const ipcacheCodec: MapCodec<IpcacheKey, IpcacheInfo> = mapCodec(
  ipcacheKeyCodec,
  ipcacheInfoCodec,
);
