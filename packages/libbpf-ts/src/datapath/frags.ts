import { mapCodec, structCodec } from '../codec.ts';
import { defineLayout } from '../layout.ts';

/**
 * bpf/include/dyad/map_frags.h. Only the datapath reads and writes dy_frags (first fragment's
 * ports by datagram); user space mirrors the layout for the drift test and for inspection.
 */
export const fragKeyLayout = defineLayout('dy_frag_key', 40, [
  { name: 'saddr', offset: 0, kind: 'bytes', length: 16 },
  { name: 'daddr', offset: 16, kind: 'bytes', length: 16 },
  { name: 'id', offset: 32, kind: 'u32' },
  { name: 'proto', offset: 36, kind: 'u8' },
  { name: 'family', offset: 37, kind: 'u8' },
  { name: 'pad', offset: 38, kind: 'pad', length: 2 },
] as const);

export const fragInfoLayout = defineLayout('dy_frag_info', 8, [
  { name: 'sport', offset: 0, kind: 'be16' },
  { name: 'dport', offset: 2, kind: 'be16' },
  { name: 'proto', offset: 4, kind: 'u8' },
  { name: 'icmp_type', offset: 5, kind: 'u8' },
  { name: 'pad', offset: 6, kind: 'pad', length: 2 },
] as const);

export const fragsCodec = mapCodec(structCodec(fragKeyLayout), structCodec(fragInfoLayout));
