import { mapCodec, mappedCodec, structCodec } from '../codec.ts';
import type { MapCodec } from '../codec.ts';
import { CodecError } from '../errors.ts';
import { defineLayout } from '../layout.ts';
import { FamilyVersion, formatPrefix, maskBytes, parsePrefixLenient } from '@dyad/netaddr';
import { Direction, PolicyCidrPrefix, PolicyClass, familyOfTag } from './constants.ts';
import type { PolicyDirection } from './policy.ts';

/** bpf/include/dyad/map_policy_cidr.h */
export const policyCidrKeyLayout = defineLayout('dy_policy_cidr_key', 28, [
  { name: 'prefixlen', offset: 0, kind: 'u32' },
  { name: 'endpoint_id', offset: 4, kind: 'u32' },
  { name: 'dir', offset: 8, kind: 'u8' },
  { name: 'family', offset: 9, kind: 'u8' },
  { name: 'pad', offset: 10, kind: 'pad', length: 2 },
  { name: 'addr', offset: 12, kind: 'bytes', length: 16 },
] as const);

export const policyCidrValueLayout = defineLayout('dy_policy_cidr_value', 4, [
  { name: 'class_id', offset: 0, kind: 'u32' },
] as const);

/** LPM bits before the address: endpoint, direction, family and padding. */
export const POLICY_CIDR_PREFIX_BASE = PolicyCidrPrefix.BASE;

/** The first class id; class ids are per endpoint and direction, above every pod identity. */
export const POLICY_CLASS_BASE = PolicyClass.BASE;

export interface PolicyCidrKey {
  readonly endpointId: number;
  readonly direction: PolicyDirection;
  /** The peer block, "198.18.0.0/15" or "fd00::/8" (canonical on decode). */
  readonly prefix: string;
}

export interface PolicyCidrValue {
  /** The class whose dy_policy entries (identity = class id) say what this block may do. */
  readonly classId: number;
}

export const policyCidrKeyCodec = mappedCodec(
  structCodec(policyCidrKeyLayout),
  (k: PolicyCidrKey) => {
    const p = parsePrefixLenient(k.prefix);
    return {
      prefixlen: POLICY_CIDR_PREFIX_BASE + p.length,
      endpoint_id: k.endpointId,
      dir: k.direction === 'ingress' ? Direction.INGRESS : Direction.EGRESS,
      family: FamilyVersion[p.family],
      addr: p.bytes,
    };
  },
  (s): PolicyCidrKey => {
    const length = s.prefixlen - POLICY_CIDR_PREFIX_BASE;
    return {
      endpointId: s.endpoint_id,
      direction: s.dir === Direction.INGRESS ? 'ingress' : 'egress',
      prefix: formatPrefix({
        family: familyOfTag(s.family),
        bytes: maskBytes(s.addr, length),
        length,
      }),
    };
  },
);

export const policyCidrValueCodec = mappedCodec(
  structCodec(policyCidrValueLayout),
  (v: PolicyCidrValue) => {
    if (v.classId < POLICY_CLASS_BASE) throw new CodecError(`class ${v.classId} below the base`);
    return { class_id: v.classId };
  },
  (s): PolicyCidrValue => ({ classId: s.class_id }),
);

export const policyCidrCodec: MapCodec<PolicyCidrKey, PolicyCidrValue> = mapCodec(
  policyCidrKeyCodec,
  policyCidrValueCodec,
);
