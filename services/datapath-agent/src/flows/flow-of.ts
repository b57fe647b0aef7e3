import type { FlowDropReason, FlowEventValue } from '@dyad/contracts';
import { Proto, Reason } from '@dyad/libbpf-ts';
import type { DatapathEvent } from '@dyad/libbpf-ts';

/** A pod an address belongs to. */
export interface PodName {
  readonly namespace: string;
  readonly name: string;
}

/** What the agent knows about addresses, identities and interfaces when a flow arrives. */
export interface FlowLookup {
  readonly node: string;
  /** Wall-clock ns minus monotonic ns: turns the datapath's ktime into a time of day. */
  readonly wallOffsetNs: bigint;
  pod(address: string): PodName | undefined;
  labels(identity: number): readonly string[];
  ifname(ifindex: number): string | undefined;
}

/** Hubble's name of each drop reason of the datapath (a test checks that none is missing). */
export const DROP_DESC: Readonly<Record<number, FlowDropReason>> = {
  [Reason.DROP_POLICY]: 'POLICY_DENIED',
  [Reason.DROP_UNKNOWN_SOURCE]: 'INVALID_SOURCE_IP',
  [Reason.DROP_MALFORMED]: 'INVALID_PACKET_DROPPED',
  [Reason.DROP_FIB]: 'FIB_LOOKUP_FAILED',
  [Reason.DROP_CT_FULL]: 'CT_MAP_INSERTION_FAILED',
  [Reason.DROP_IPV6_EXT]: 'INVALID_IPV6_EXTENSION_HEADER',
  [Reason.DROP_FRAG_UNKNOWN]: 'FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND',
  // multicast, broadcast or link-local towards a pod: no unicast L3 target Dyad delivers to
  [Reason.DROP_NO_ENDPOINT]: 'UNKNOWN_L3_TARGET_ADDRESS',
  [Reason.LB_NO_BACKEND]: 'SERVICE_BACKEND_NOT_FOUND',
  // externalTrafficPolicy Local and no backend on this node: Cilium drops it the same way
  [Reason.LB_NO_LOCAL_BACKEND]: 'SERVICE_BACKEND_NOT_FOUND',
};

const TCP_FLAG_NAMES = ['FIN', 'SYN', 'RST', 'PSH', 'ACK', 'URG', 'ECE', 'CWR'] as const;

export function tcpFlags(byte: number): Partial<Record<(typeof TCP_FLAG_NAMES)[number], true>> {
  const out: Partial<Record<(typeof TCP_FLAG_NAMES)[number], true>> = {};
  TCP_FLAG_NAMES.forEach((name, bit) => {
    if (byte & (1 << bit)) out[name] = true;
  });
  return out;
}

function layer4(e: DatapathEvent): FlowEventValue['l4'] {
  const ports = { source_port: e.sport, destination_port: e.dport };
  switch (e.proto) {
    case Proto.TCP:
      return { TCP: { ...ports, flags: tcpFlags(e.tcpFlags) } };
    case Proto.UDP:
      return { UDP: ports };
    case Proto.SCTP:
      return { SCTP: ports };
    case Proto.ICMP:
      return { ICMPv4: { type: e.dport } }; // the datapath keeps the ICMP type in dport
    case Proto.ICMPV6:
      return { ICMPv6: { type: e.dport } };
    default:
      return { protocol: e.proto };
  }
}

export function endpoint(
  l: FlowLookup,
  address: string,
  identity: number,
): FlowEventValue['source'] {
  const pod = l.pod(address);
  return {
    identity,
    ...(pod ? { namespace: pod.namespace, pod_name: pod.name } : {}),
    labels: [...l.labels(identity)],
  };
}

/** One datapath event as a flow; pure, given what the lookup knows at that moment. */
export function flowOf(e: DatapathEvent, l: FlowLookup): FlowEventValue {
  const dropped = e.type === 'drop';
  const ifname = l.ifname(e.ifindex);
  const policyVerdict =
    e.reason === Reason.DROP_POLICY
      ? ('DENIED' as const)
      : e.reason === Reason.POLICY_ALLOWED
        ? ('ALLOWED' as const)
        : undefined;
  return {
    time: new Date(Number((e.tsNs + l.wallOffsetNs) / 1_000_000n)).toISOString(),
    node_name: l.node,
    verdict: dropped ? 'DROPPED' : 'FORWARDED',
    ...(dropped
      ? { drop_reason: e.reason, drop_reason_desc: DROP_DESC[e.reason] ?? 'UNKNOWN_REASON' }
      : {}),
    ...(policyVerdict ? { policy_verdict: policyVerdict } : {}),
    traffic_direction:
      e.direction === 'ingress'
        ? 'INGRESS'
        : e.direction === 'egress'
          ? 'EGRESS'
          : 'TRAFFIC_DIRECTION_UNKNOWN',
    IP: { source: e.src, destination: e.dst, ipVersion: e.family },
    l4: layer4(e),
    source: endpoint(l, e.src, e.srcIdentity),
    destination: endpoint(l, e.dst, e.dstIdentity),
    interface: { index: e.ifindex, ...(ifname === undefined ? {} : { name: ifname }) },
    is_reply: e.isReply,
    event_type: { type: dropped ? 1 : 4 },
    Type: 'L3_L4',
  };
}

/** `pod/<namespace>/<name>` of the pod whose program saw the packet, for `ce-subject`. */
export function flowCeSubject(f: FlowEventValue): string | undefined {
  const local = f.traffic_direction === 'EGRESS' ? f.source : f.destination;
  return podCeSubject(local.namespace, local.pod_name);
}

export function podCeSubject(
  namespace: string | undefined,
  name: string | undefined,
): string | undefined {
  return name === undefined || namespace === undefined ? undefined : `pod/${namespace}/${name}`;
}
