import { mapCodec, mappedCodec, structCodec } from '../codec.ts';
import type { MapCodec } from '../codec.ts';
import { defineLayout } from '../layout.ts';
import { formatIp, formatPrefix, maskBytes, parseIp, parsePrefix } from '../ip.ts';
import { familyTag } from './endpoints.ts';

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
export const IPCACHE_PREFIX_BASE = 32;

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
  const p = parsePrefix(prefix);
  return { prefixlen: IPCACHE_PREFIX_BASE + p.length, family: p.family, addr: p.bytes };
}

export const ipcacheKeyCodec = mappedCodec(
  structCodec(ipcacheKeyLayout),
  (k: IpcacheKey) => encodeIpcachePrefix(k.prefix),
  (s): IpcacheKey => {
    const length = s.prefixlen - IPCACHE_PREFIX_BASE;
    return {
      prefix: formatPrefix({
        family: familyTag(s.family),
        bytes: maskBytes(s.addr, length),
        length,
      }),
    };
  },
);

export const ipcacheInfoCodec = mappedCodec(
  structCodec(ipcacheInfoLayout),
  (v: IpcacheInfo) => {
    const node = v.nodeAddress === undefined ? undefined : parseIp(v.nodeAddress);
    return {
      identity: v.identity,
      node_id: v.nodeId,
      node_family: node?.family ?? 0,
      flags: v.flags,
      node_addr: node?.bytes ?? new Uint8Array(16),
    };
  },
  (s): IpcacheInfo => {
    const base = { identity: s.identity, nodeId: s.node_id, flags: s.flags };
    return s.node_family === 0
      ? base
      : { ...base, nodeAddress: formatIp(familyTag(s.node_family), s.node_addr) };
  },
);

export const ipcacheCodec: MapCodec<IpcacheKey, IpcacheInfo> = mapCodec(
  ipcacheKeyCodec,
  ipcacheInfoCodec,
);
