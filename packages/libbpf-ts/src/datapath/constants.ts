import { familyOfVersion } from '@dyad/netaddr';
import type { Family } from '@dyad/netaddr';
import { CodecError } from '../errors.ts';
/**
 * Mirrors the C enums of bpf/include/dyad/*.h; numbers are part of the datapath contract, and
 * the drift test compares every one of them with the objects' BTF.
 */

/**
 * The family of a datapath tag (`enum dy_family`, whose numbers are netaddr's `FamilyVersion`:
 * encoders write `FamilyVersion[family]`); a byte that is no tag is a codec error.
 */
export function familyOfTag(tag: number): Family {
  const family = familyOfVersion(tag);
  if (family === undefined) throw new CodecError(`bad family tag ${tag}`);
  return family;
}

export const Direction = { EGRESS: 1, INGRESS: 2, NODE: 3 } as const;
export type DirectionName = 'egress' | 'ingress' | 'node';

export const Identity = { ANY: 0, HOST: 1, WORLD: 2 } as const;

export const EndpointFlags = { ENFORCE_INGRESS: 1 << 0, ENFORCE_EGRESS: 1 << 1 } as const;

export const IpcacheFlags = { LOCAL_NODE: 1 << 0 } as const;

/** LPM bits before the address in an ipcache key: the family byte and its padding. */
export const IpcachePrefix = { BASE: 32 } as const;

/** LPM bits of a policy key up to the protocol, and up to the port. */
export const PolicyPrefix = { PROTO: 72, PORT: 80 } as const;

/** LPM bits of a policy CIDR key before the address (endpoint, direction, family, padding). */
export const PolicyCidrPrefix = { BASE: 64 } as const;

/** CIDR class ids (the identity of a class's dy_policy entries) start here, above pod identities. */
export const PolicyClass = { BASE: 0x0100_0000 } as const;

export const Reason = {
  FORWARDED: 1,
  PASSED: 2,
  POLICY_ALLOWED: 3,
  /** Counter only: an event the ring buffer had no room for. */
  EVENT_LOST: 4,
  DROP_POLICY: 10,
  DROP_UNKNOWN_SOURCE: 11,
  DROP_MALFORMED: 12,
  DROP_FIB: 13,
  DROP_CT_FULL: 14,
  // 15 was DROP_POLICY_DENY (explicit deny entries); reserved
  DROP_IPV6_EXT: 16,
  DROP_FRAG_UNKNOWN: 17,
  DROP_NO_ENDPOINT: 18,
  LB_NO_BACKEND: 19,
  LB_NO_LOCAL_BACKEND: 20,
} as const;

export const EventType = { DROP: 1, TRACE: 2 } as const;

export const EventFlags = { REPLY: 1 << 0 } as const;

/** 2 was DENY; NetworkPolicy only allows, so every entry allows. */
export const PolicyAction = { ALLOW: 1 } as const;

export const ConfigFlags = { TRACE: 1 << 0 } as const;

export const Proto = { ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58, SCTP: 132 } as const;

export const CtFlags = { SEEN_REPLY: 1 << 0, CLOSING: 1 << 1 } as const;

export function directionName(n: number): DirectionName | undefined {
  return n === Direction.EGRESS
    ? 'egress'
    : n === Direction.INGRESS
      ? 'ingress'
      : n === Direction.NODE
        ? 'node'
        : undefined;
}

// built once: every ring-buffer event names its reason
const REASON_NAMES = new Map<number, string>();
for (const [k, v] of Object.entries(Reason)) if (!REASON_NAMES.has(v)) REASON_NAMES.set(v, k);

export function reasonName(n: number): string {
  return REASON_NAMES.get(n) ?? `UNKNOWN_${n}`;
}

/** Map names in the datapath object (bpf/lib/maps.h). */
export const DatapathMaps = {
  endpoints: 'dy_endpoints',
  ipcache: 'dy_ipcache',
  policy: 'dy_policy',
  policyCidr: 'dy_policy_cidr',
  conntrack: 'dy_conntrack',
  frags: 'dy_frags',
  metrics: 'dy_metrics',
  events: 'dy_events',
  config: 'dy_config',
  lbServices: 'dy_lb_services',
  lbMaglev: 'dy_lb_maglev',
  lbBackends: 'dy_lb_backends',
  lbFlows: 'dy_lb_flows',
  lbRnat: 'dy_lb_rnat',
  lbAffinity: 'dy_lb_affinity',
  lbSnat: 'dy_lb_snat',
} as const;

export const DatapathPrograms = {
  fromContainer: 'dy_from_container',
  toContainer: 'dy_to_container',
  fromNetdev: 'dy_from_netdev',
} as const;
