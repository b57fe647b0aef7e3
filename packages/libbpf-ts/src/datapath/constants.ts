/** Mirrors bpf/include/dyad/common.h; numbers are part of the datapath contract. */
export const Family = { V4: 4, V6: 6 } as const;

export const Direction = { EGRESS: 1, INGRESS: 2, NODE: 3 } as const;
export type DirectionName = 'egress' | 'ingress' | 'node';

export const Identity = { ANY: 0, HOST: 1, WORLD: 2 } as const;

export const EndpointFlags = { ENFORCE_INGRESS: 1 << 0, ENFORCE_EGRESS: 1 << 1 } as const;

export const IpcacheFlags = { LOCAL_NODE: 1 << 0 } as const;

export const Reason = {
  FORWARDED: 1,
  PASSED: 2,
  POLICY_ALLOWED: 3,
  DROP_POLICY: 10,
  DROP_UNKNOWN_SOURCE: 11,
  DROP_MALFORMED: 12,
  DROP_FIB: 13,
  DROP_CT_FULL: 14,
  DROP_POLICY_DENY: 15,
} as const;

export const EventType = { DROP: 1, TRACE: 2 } as const;

export const PolicyAction = { ALLOW: 1, DENY: 2 } as const;

export const ConfigFlags = { TRACE: 1 << 0 } as const;

export const Proto = { ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58 } as const;

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

export function reasonName(n: number): string {
  for (const [k, v] of Object.entries(Reason)) if (v === n) return k;
  return `UNKNOWN_${n}`;
}

/** Map names in the datapath object (bpf/lib/maps.h). */
export const DatapathMaps = {
  endpoints: 'dy_endpoints',
  ipcache: 'dy_ipcache',
  policy: 'dy_policy',
  conntrack: 'dy_conntrack',
  metrics: 'dy_metrics',
  events: 'dy_events',
  config: 'dy_config',
} as const;

export const DatapathPrograms = {
  fromContainer: 'dy_from_container',
  toContainer: 'dy_to_container',
  fromNetdev: 'dy_from_netdev',
} as const;
