import { mapCodec, mappedCodec, structCodec } from '../codec.ts';
import type { MapCodec } from '../codec.ts';
import { defineLayout } from '../layout.ts';
import { CodecError } from '../errors.ts';
import { Direction, PolicyPrefix } from './constants.ts';

/** bpf/include/dyad/map_policy.h */
export const policyKeyLayout = defineLayout('dy_policy_key', 16, [
  { name: 'prefixlen', offset: 0, kind: 'u32' },
  { name: 'endpoint_id', offset: 4, kind: 'u32' },
  { name: 'identity', offset: 8, kind: 'u32' },
  { name: 'dir', offset: 12, kind: 'u8' },
  { name: 'proto', offset: 13, kind: 'u8' },
  { name: 'dport', offset: 14, kind: 'be16' },
] as const);

export const policyValueLayout = defineLayout('dy_policy_value', 8, [
  { name: 'action', offset: 0, kind: 'u32' },
  { name: 'rule_id', offset: 4, kind: 'u32' },
] as const);

/** LPM bits up to and excluding proto / port (DY_POLICY_PREFIX_PROTO / _PORT). */
export const POLICY_PREFIX_PROTO = PolicyPrefix.PROTO;
export const POLICY_PREFIX_PORT = PolicyPrefix.PORT;

export type PolicyDirection = 'ingress' | 'egress';

export interface PolicyKey {
  readonly endpointId: number;
  /** Peer identity; Identity.ANY (0) matches every peer. */
  readonly identity: number;
  readonly direction: PolicyDirection;
  /** IP protocol number; 0 = any protocol (then port must be any). ICMP types are ports. */
  readonly proto: number;
  /** First port of the block this entry covers. */
  readonly port: number;
  /** Leading port bits that must match: 16 = one port, 0 = any port. */
  readonly portPrefixLen: number;
}

export interface PolicyValue {
  /** PolicyAction */
  readonly action: number;
  readonly ruleId: number;
}

export const policyKeyCodec = mappedCodec(
  structCodec(policyKeyLayout),
  (k: PolicyKey) => {
    if (k.portPrefixLen < 0 || k.portPrefixLen > 16)
      throw new CodecError(`port prefix ${k.portPrefixLen} not in 0..16`);
    if (k.proto === 0 && k.portPrefixLen !== 0) throw new CodecError('a port needs a protocol');
    const mask = k.portPrefixLen === 0 ? 0 : (0xffff << (16 - k.portPrefixLen)) & 0xffff;
    return {
      prefixlen: k.proto === 0 ? POLICY_PREFIX_PROTO : POLICY_PREFIX_PORT + k.portPrefixLen,
      endpoint_id: k.endpointId,
      identity: k.identity,
      dir: k.direction === 'ingress' ? Direction.INGRESS : Direction.EGRESS,
      proto: k.proto,
      dport: k.port & mask,
    };
  },
  (s): PolicyKey => ({
    endpointId: s.endpoint_id,
    identity: s.identity,
    direction: s.dir === Direction.INGRESS ? 'ingress' : 'egress',
    proto: s.prefixlen < POLICY_PREFIX_PORT ? 0 : s.proto,
    port: s.dport,
    portPrefixLen: Math.max(0, s.prefixlen - POLICY_PREFIX_PORT),
  }),
);

export const policyValueCodec = mappedCodec(
  structCodec(policyValueLayout),
  (v: PolicyValue) => ({ action: v.action, rule_id: v.ruleId }),
  (s): PolicyValue => ({ action: s.action, ruleId: s.rule_id }),
);

export const policyCodec: MapCodec<PolicyKey, PolicyValue> = mapCodec(
  policyKeyCodec,
  policyValueCodec,
);

/** The fewest aligned port blocks (port, prefix length) that cover exactly from..to. */
export function portRangePrefixes(
  from: number,
  to: number,
): Array<{ port: number; length: number }> {
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > 0xffff || from > to) {
    throw new CodecError(`bad port range ${from}-${to}`);
  }
  const out: Array<{ port: number; length: number }> = [];
  let lo = from;
  while (lo <= to) {
    // block size 2^(16-len); widen while the block stays aligned and inside the range
    let len = 16;
    while (len > 0) {
      const size = 1 << (16 - (len - 1));
      if (lo % size !== 0 || lo + size - 1 > to) break;
      len--;
    }
    out.push({ port: lo, length: len });
    lo += 1 << (16 - len);
  }
  return out;
}

export interface PolicyRule {
  readonly endpointId: number;
  readonly identity: number;
  readonly direction: PolicyDirection;
  /** Omit for any protocol. */
  readonly proto?: number;
  /** One port, or an inclusive range; omit for any port. */
  readonly ports?: number | { readonly from: number; readonly to: number };
}

/** Expands a rule into the LPM keys that implement it. */
export function policyKeys(rule: PolicyRule): PolicyKey[] {
  const base = { endpointId: rule.endpointId, identity: rule.identity, direction: rule.direction };
  if (rule.proto === undefined || rule.proto === 0) {
    if (rule.ports !== undefined) throw new CodecError('ports need a protocol');
    return [{ ...base, proto: 0, port: 0, portPrefixLen: 0 }];
  }
  const proto = rule.proto;
  if (rule.ports === undefined) return [{ ...base, proto, port: 0, portPrefixLen: 0 }];
  const range = typeof rule.ports === 'number' ? { from: rule.ports, to: rule.ports } : rule.ports;
  return portRangePrefixes(range.from, range.to).map((b) => ({
    ...base,
    proto,
    port: b.port,
    portPrefixLen: b.length,
  }));
}
