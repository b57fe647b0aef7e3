import type { Family } from '@dyad/netaddr';
import { z } from 'zod';
import { defineMessage } from './contract.ts';
import { FamilySchema, IpAddress } from './family.ts';
import type { StreamSpec } from './streams.ts';
import { CLUSTER_SCOPE_TOKEN, encodeToken } from './subjects.ts';

/**
 * Flows: what the datapath did with a packet (a new flow allowed, or a packet dropped), as the
 * node's agent saw it in the datapath's ring buffer and enriched with pods, namespaces and
 * identity labels. Field names are Hubble's (`flow.proto`, JSON names as `hubble observe -o json`
 * prints them), so a Hubble user's jq filters carry over; docs/events/flows.md has the mapping.
 *
 * Subjects put the fields a consumer filters on into tokens, so NATS wildcards select them:
 * `dyad.flow.v1.<node>.<verdict>.<family>.<source namespace>.<destination namespace>`, verdict
 * `forwarded` or `dropped`, family `ipv4` or `ipv6`, `_` for an endpoint without a namespace
 * (host, world). Every flow touching namespace N: the two filters `dyad.flow.v1.*.*.*.N.*` and
 * `dyad.flow.v1.*.*.*.*.N`.
 */

export const FLOW_SUBJECT_ROOT = 'dyad.flow.v1';
export const FLOW_STREAM = 'DYAD_FLOWS';

export const FlowVerdict = z.enum(['FORWARDED', 'DROPPED']);
export type FlowVerdict = z.infer<typeof FlowVerdict>;

/**
 * Hubble's `DropReason` names for the datapath's drop reasons. Like Hubble's enum it grows when
 * the datapath learns a new reason: a consumer treats a name it does not know as UNKNOWN_REASON.
 */
export const FlowDropReason = z.enum([
  'POLICY_DENIED',
  'INVALID_SOURCE_IP',
  'INVALID_PACKET_DROPPED',
  'FIB_LOOKUP_FAILED',
  'CT_MAP_INSERTION_FAILED',
  'INVALID_IPV6_EXTENSION_HEADER',
  'FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND',
  'UNKNOWN_L3_TARGET_ADDRESS',
  'SERVICE_BACKEND_NOT_FOUND',
  'UNKNOWN_REASON',
]);
export type FlowDropReason = z.infer<typeof FlowDropReason>;

const Port = z.number().int().min(0).max(65535);
const Identity = z.number().int().min(0).max(0xffffffff);

/** Set flags of a TCP header, by Hubble's names. */
export const TcpFlags = z.object({
  FIN: z.literal(true).optional(),
  SYN: z.literal(true).optional(),
  RST: z.literal(true).optional(),
  PSH: z.literal(true).optional(),
  ACK: z.literal(true).optional(),
  URG: z.literal(true).optional(),
  ECE: z.literal(true).optional(),
  CWR: z.literal(true).optional(),
});

const Ports = { source_port: Port, destination_port: Port };

/** One of Hubble's `Layer4` members. ICMP carries the type only: the datapath records no code. */
export const FlowLayer4 = z.union([
  z.object({ TCP: z.object({ ...Ports, flags: TcpFlags }) }),
  z.object({ UDP: z.object(Ports) }),
  z.object({ SCTP: z.object(Ports) }),
  z.object({ ICMPv4: z.object({ type: z.number().int().min(0).max(255) }) }),
  z.object({ ICMPv6: z.object({ type: z.number().int().min(0).max(255) }) }),
  /** Another IP protocol, by number (a Dyad addition). */
  z.object({ protocol: z.number().int().min(0).max(255) }),
]);

/** Hubble's `Endpoint`: who is at one end. Pod fields are absent for host, world and unknown peers. */
export const FlowEndpoint = z.object({
  identity: Identity,
  namespace: z.string().min(1).optional(),
  pod_name: z.string().min(1).optional(),
  /** The identity's labels as the policy service publishes them (`k8s:app=web`, …), sorted. */
  labels: z.array(z.string()),
});

export const FlowEvent = defineMessage({
  type: 'io.dyad.flow.v1',
  version: 1,
  schema: z.object({
    /** When the datapath saw the packet (RFC 3339, wall clock of the node). */
    time: z.iso.datetime(),
    node_name: z.string().min(1),
    verdict: FlowVerdict,
    /** The datapath's own reason number (bpf/include/dyad/common.h), on drops. */
    drop_reason: z.number().int().min(0).max(255).optional(),
    drop_reason_desc: FlowDropReason.optional(),
    /**
     * What NetworkPolicy decided, when it decided: `ALLOWED` on the first packet of a flow the
     * pod's policy admitted, `DENIED` on a packet it refused. Absent when no policy applies.
     */
    policy_verdict: z.enum(['ALLOWED', 'DENIED']).optional(),
    traffic_direction: z.enum(['INGRESS', 'EGRESS', 'TRAFFIC_DIRECTION_UNKNOWN']),
    IP: z.object({
      source: IpAddress,
      destination: IpAddress,
      ipVersion: FamilySchema,
    }),
    l4: FlowLayer4,
    source: FlowEndpoint,
    destination: FlowEndpoint,
    /** The pod's host-side interface the program ran on. */
    interface: z.object({ index: z.number().int().min(0), name: z.string().optional() }),
    is_reply: z.boolean(),
    /** Hubble's event type: 1 a drop, 4 a trace (a new flow allowed). */
    event_type: z.object({ type: z.union([z.literal(1), z.literal(4)]) }),
    Type: z.literal('L3_L4'),
  }),
  description:
    'A flow as the datapath saw it: a new flow allowed (with the trace setting on) or a dropped packet with its reason, both ends enriched with pod, namespace, identity and labels. Hubble field names. Kept an hour at most (stream `DYAD_FLOWS`).',
  subjectPattern: `${FLOW_SUBJECT_ROOT}.{node}.{verdict}.{family}.{sourceNamespace}.{destinationNamespace}`,
  stream: FLOW_STREAM,
});

export type FlowEventValue = z.output<typeof FlowEvent.schema>;

/** Subject token of a verdict: `forwarded`, `dropped`. */
export function flowVerdictToken(v: FlowVerdict): string {
  return v.toLowerCase();
}

/** Subject token of a family: `ipv4`, `ipv6`. */
export function flowFamilyToken(ipVersion: Family): string {
  return ipVersion.toLowerCase();
}

function nsToken(ns: string | undefined): string {
  return ns === undefined ? CLUSTER_SCOPE_TOKEN : encodeToken(ns);
}

export function flowSubject(f: FlowEventValue): string {
  return flowSubjectOf({
    node: f.node_name,
    verdict: f.verdict,
    ipVersion: f.IP.ipVersion,
    srcNamespace: f.source.namespace,
    dstNamespace: f.destination.namespace,
  });
}

/** What of a flow its subject names, for a producer that has not built the flow as an object. */
export interface FlowSubjectParts {
  readonly node: string;
  readonly verdict: FlowVerdict;
  readonly ipVersion: Family;
  readonly srcNamespace: string | undefined;
  readonly dstNamespace: string | undefined;
}

/** `flowSubject` from the parts it reads. */
export function flowSubjectOf(p: FlowSubjectParts): string {
  return [
    FLOW_SUBJECT_ROOT,
    encodeToken(p.node),
    flowVerdictToken(p.verdict),
    flowFamilyToken(p.ipVersion),
    nsToken(p.srcNamespace),
    nsToken(p.dstNamespace),
  ].join('.');
}

export interface FlowSelector {
  readonly node?: string;
  readonly verdict?: FlowVerdict;
  readonly ipVersion?: Family;
  /** Flows with this namespace at either end. */
  readonly namespace?: string;
}

/**
 * The NATS filter subjects that select exactly the flows a selector names (one, or two when a
 * namespace may be at either end).
 */
export function flowFilters(s: FlowSelector): string[] {
  const head = [
    FLOW_SUBJECT_ROOT,
    s.node === undefined ? '*' : encodeToken(s.node),
    s.verdict === undefined ? '*' : flowVerdictToken(s.verdict),
    s.ipVersion === undefined ? '*' : flowFamilyToken(s.ipVersion),
  ].join('.');
  if (s.namespace === undefined) return [`${head}.*.*`];
  const ns = encodeToken(s.namespace);
  return [`${head}.${ns}.*`, `${head}.*.${ns}`];
}

export const FlowStream: StreamSpec = {
  name: FLOW_STREAM,
  description:
    'Flows from every node: bounded history (an hour, 256 MiB, whichever is reached first), oldest discarded first.',
  subjects: [`${FLOW_SUBJECT_ROOT}.>`],
  storage: 'file',
  maxAgeMs: 3600 * 1000,
  maxBytes: 256 * 1024 * 1024,
};
