import { mapCodec, mappedCodec, structCodec } from '../codec.ts';
import type { MapCodec } from '../codec.ts';
import { defineLayout } from '../layout.ts';
import { CodecError } from '../errors.ts';
import { formatIp, formatMac, parseIp, parseMac } from '../ip.ts';
import type { IpFamily } from '../ip.ts';

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

function family(n: number): IpFamily {
  if (n !== 4 && n !== 6) throw new CodecError(`bad family tag ${n}`);
  return n;
}

export const endpointKeyCodec = mappedCodec(
  structCodec(endpointKeyLayout),
  (k: EndpointKey) => {
    const ip = parseIp(k.address);
    return { addr: ip.bytes, family: ip.family };
  },
  (s): EndpointKey => ({ address: formatIp(family(s.family), s.addr) }),
);

export const endpointInfoCodec = mappedCodec(
  structCodec(endpointInfoLayout),
  (v: EndpointInfo) => ({
    ifindex: v.ifindex,
    endpoint_id: v.endpointId,
    identity: v.identity,
    flags: v.flags,
    mac: parseMac(v.mac),
    node_mac: parseMac(v.nodeMac),
  }),
  (s): EndpointInfo => ({
    ifindex: s.ifindex,
    endpointId: s.endpoint_id,
    identity: s.identity,
    flags: s.flags,
    mac: formatMac(s.mac),
    nodeMac: formatMac(s.node_mac),
  }),
);

export const endpointsCodec: MapCodec<EndpointKey, EndpointInfo> = mapCodec(
  endpointKeyCodec,
  endpointInfoCodec,
);

export { family as familyTag };
