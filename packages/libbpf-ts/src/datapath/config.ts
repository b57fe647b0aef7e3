import { mapCodec, structCodec, u32Codec } from '../codec.ts';
import type { MapCodec } from '../codec.ts';
import { defineLayout } from '../layout.ts';
import type { StructValue } from '../layout.ts';

/** bpf/include/dyad/map_config.h; zero fields select the datapath's defaults. */
export const configLayout = defineLayout('dy_config', 24, [
  { name: 'flags', offset: 0, kind: 'u32' },
  { name: 'ct_tcp_s', offset: 4, kind: 'u32' },
  { name: 'ct_tcp_close_s', offset: 8, kind: 'u32' },
  { name: 'ct_udp_s', offset: 12, kind: 'u32' },
  { name: 'ct_icmp_s', offset: 16, kind: 'u32' },
  { name: 'pad', offset: 20, kind: 'pad', length: 4 },
] as const);

export type DatapathConfig = StructValue<typeof configLayout.fields>;

export const configValueCodec = structCodec(configLayout);

/** Single slot: key 0. */
export const configCodec: MapCodec<number, DatapathConfig> = mapCodec(u32Codec, configValueCodec);
