import { mapCodec, structCodec } from '../codec.ts';
import type { Codec, MapCodec } from '../codec.ts';
import { defineLayout, fieldAt } from '../layout.ts';
import type { StructValue } from '../layout.ts';
import {
  FamilyVersion,
  formatIp,
  formatMac,
  parseIp,
  parseIpInto,
  parseMac,
  parseMacInto,
} from '@dyad/netaddr';
import { familyOfTag } from './constants.ts';
import { u32At, zeroAt } from './write.ts';

/** bpf/include/dyad/map_endpoints.h */
export const endpointKeyLayout = defineLayout('dy_endpoint_key', 20, [
  { name: 'addr', offset: 0, kind: 'bytes', length: 16 },
  { name: 'family', offset: 16, kind: 'u8' },
  { name: 'pad', offset: 17, kind: 'pad', length: 3 },
] as const);

export const endpointInfoLayout = defineLayout('dy_endpoint_info', 28, [
  { name: 'ifindex', offset: 0, kind: 'u32' },
  { name: 'endpoint_id', offset: 4, kind: 'u32' },
  { name: 'identity', offset: 8, kind: 'u32' },
  { name: 'flags', offset: 12, kind: 'u32' },
  { name: 'mac', offset: 16, kind: 'bytes', length: 6 },
  { name: 'node_mac', offset: 22, kind: 'bytes', length: 6 },
] as const);

export interface EndpointKey {
  readonly address: string;
}

export interface EndpointInfo {
  readonly ifindex: number;
  readonly endpointId: number;
  readonly identity: number;
  /** EndpointFlags bits */
  readonly flags: number;
  /** Pod (container side) MAC. */
  readonly mac: string;
  /** Host-side veth MAC. */
  readonly nodeMac: string;
}

/** Reference mapping to the plain struct; the fast encoders below must agree with it (tested). */
export function endpointKeyToStruct(k: EndpointKey): StructValue<typeof endpointKeyLayout.fields> {
  const ip = parseIp(k.address);
  return { addr: ip.bytes, family: FamilyVersion[ip.family] };
}

export function endpointInfoToStruct(
  v: EndpointInfo,
): StructValue<typeof endpointInfoLayout.fields> {
  return {
    ifindex: v.ifindex,
    endpoint_id: v.endpointId,
    identity: v.identity,
    flags: v.flags,
    mac: parseMac(v.mac),
    node_mac: parseMac(v.nodeMac),
  };
}

const keyStruct = structCodec(endpointKeyLayout);
const infoStruct = structCodec(endpointInfoLayout);
const K_ADDR = fieldAt(endpointKeyLayout, 'addr', 'bytes', 16);
const K_FAMILY = fieldAt(endpointKeyLayout, 'family', 'u8');
const K_PAD = fieldAt(endpointKeyLayout, 'pad', 'pad', 3);
const I_IFINDEX = fieldAt(endpointInfoLayout, 'ifindex', 'u32');
const I_EPID = fieldAt(endpointInfoLayout, 'endpoint_id', 'u32');
const I_IDENTITY = fieldAt(endpointInfoLayout, 'identity', 'u32');
const I_FLAGS = fieldAt(endpointInfoLayout, 'flags', 'u32');
const I_MAC = fieldAt(endpointInfoLayout, 'mac', 'bytes', 6);
const I_NODE_MAC = fieldAt(endpointInfoLayout, 'node_mac', 'bytes', 6);

export const endpointKeyCodec: Codec<EndpointKey> = {
  size: endpointKeyLayout.size,
  layout: endpointKeyLayout,
  encodeInto(k, buf, off) {
    buf[off + K_FAMILY] = FamilyVersion[parseIpInto(k.address, buf, off + K_ADDR)];
    zeroAt(buf, off + K_PAD, 3);
  },
  decode(buf, off) {
    const s = keyStruct.decode(buf, off);
    return { address: formatIp(familyOfTag(s.family), s.addr) };
  },
};

export const endpointInfoCodec: Codec<EndpointInfo> = {
  size: endpointInfoLayout.size,
  layout: endpointInfoLayout,
  encodeInto(v, buf, off) {
    u32At(buf, off + I_IFINDEX, v.ifindex, 'ifindex');
    u32At(buf, off + I_EPID, v.endpointId, 'endpointId');
    u32At(buf, off + I_IDENTITY, v.identity, 'identity');
    u32At(buf, off + I_FLAGS, v.flags, 'flags');
    parseMacInto(v.mac, buf, off + I_MAC);
    parseMacInto(v.nodeMac, buf, off + I_NODE_MAC);
  },
  decode(buf, off) {
    const s = infoStruct.decode(buf, off);
    return {
      ifindex: s.ifindex,
      endpointId: s.endpoint_id,
      identity: s.identity,
      flags: s.flags,
      mac: formatMac(s.mac),
      nodeMac: formatMac(s.node_mac),
    };
  },
};

export const endpointsCodec: MapCodec<EndpointKey, EndpointInfo> = mapCodec(
  endpointKeyCodec,
  endpointInfoCodec,
);
