import type { JsonText } from '@dyad/bus';
import { flowSubjectOf } from '@dyad/contracts';
import type { FlowEventValue } from '@dyad/contracts';
import { Proto, Reason } from '@dyad/libbpf-ts';
import type { DatapathEvent } from '@dyad/libbpf-ts';
import type { Family } from '@dyad/netaddr';
import { DROP_DESC, endpoint, podCeSubject, tcpFlags } from './flow-of.ts';
import type { FlowLookup } from './flow-of.ts';

/** A flow ready to send: its JSON text and what the subject and CloudEvent headers name. */
export interface EncodedFlow {
  /** Exactly `JSON.stringify(flowOf(e, lookup))`. */
  readonly json: JsonText<FlowEventValue>;
  readonly subject: string;
  readonly ceSubject: string | undefined;
  /** The flow's `time`. */
  readonly time: string;
}

interface EndpointText {
  readonly identity: number;
  readonly json: string;
  readonly namespace: string | undefined;
  readonly ceSubject: string | undefined;
}

/** The TCP flags object of every flags byte, as JSON. */
const TCP_FLAGS_JSON: readonly string[] = Array.from({ length: 256 }, (_, b) =>
  JSON.stringify(tcpFlags(b)),
);

const DIRECTIONS = ['INGRESS', 'EGRESS', 'TRAFFIC_DIRECTION_UNKNOWN'] as const;

/** verdict … traffic_direction of a flow, by drop/trace, reason and direction; filled as met. */
const verdictTexts = new Map<number, string>();

function verdictText(e: DatapathEvent): string {
  const dropped = e.type === 'drop';
  const dir = e.direction === 'ingress' ? 0 : e.direction === 'egress' ? 1 : 2;
  const key = (dropped ? 1 : 0) | (e.reason << 1) | (dir << 10);
  let text = verdictTexts.get(key);
  if (text === undefined) {
    const policy =
      e.reason === Reason.DROP_POLICY
        ? 'DENIED'
        : e.reason === Reason.POLICY_ALLOWED
          ? 'ALLOWED'
          : undefined;
    text =
      `"verdict":"${dropped ? 'DROPPED' : 'FORWARDED'}"` +
      (dropped
        ? `,"drop_reason":${e.reason},"drop_reason_desc":${JSON.stringify(DROP_DESC[e.reason] ?? 'UNKNOWN_REASON')}`
        : '') +
      (policy === undefined ? '' : `,"policy_verdict":"${policy}"`) +
      `,"traffic_direction":"${DIRECTIONS[dir]}"`;
    verdictTexts.set(key, text);
  }
  return text;
}

function l4Text(e: DatapathEvent): string {
  switch (e.proto) {
    case Proto.TCP:
      return `{"TCP":{"source_port":${e.sport},"destination_port":${e.dport},"flags":${TCP_FLAGS_JSON[e.tcpFlags & 0xff] ?? '{}'}}}`;
    case Proto.UDP:
      return `{"UDP":{"source_port":${e.sport},"destination_port":${e.dport}}}`;
    case Proto.SCTP:
      return `{"SCTP":{"source_port":${e.sport},"destination_port":${e.dport}}}`;
    case Proto.ICMP:
      return `{"ICMPv4":{"type":${e.dport}}}`;
    case Proto.ICMPV6:
      return `{"ICMPv6":{"type":${e.dport}}}`;
    default:
      return `{"protocol":${e.proto}}`;
  }
}

/**
 * Writes flows as JSON text without building them as objects: at flood rates `flowOf` plus
 * `JSON.stringify` cost more than sending. What depends on the lookup (an address's pod and an
 * identity's labels, an interface's name, the subject) is written once per encoder and reused,
 * so an encoder is meant for one batch of events: a change the lookup learns shows in the next
 * batch. Same keys, same order, same text as `JSON.stringify(flowOf(e, lookup))` (tested).
 */
export class FlowEncoder {
  readonly lookup: FlowLookup;
  readonly #node: string;
  readonly #endpoints = new Map<string, EndpointText>();
  readonly #interfaces = new Map<number, string>();
  readonly #subjects = new Map<string, string>();
  #ms = Number.NaN;
  #iso = '';

  constructor(lookup: FlowLookup) {
    this.lookup = lookup;
    this.#node = JSON.stringify(lookup.node);
  }

  encode(e: DatapathEvent): EncodedFlow {
    const ms = Number((e.tsNs + this.lookup.wallOffsetNs) / 1_000_000n);
    if (ms !== this.#ms) {
      this.#iso = new Date(ms).toISOString();
      this.#ms = ms;
    }
    const time = this.#iso;
    const src = this.#endpoint(e.src, e.srcIdentity);
    const dst = this.#endpoint(e.dst, e.dstIdentity);
    const ipVersion = e.family;
    const dropped = e.type === 'drop';
    const json =
      `{"time":"${time}","node_name":${this.#node},${verdictText(e)}` +
      `,"IP":{"source":"${e.src}","destination":"${e.dst}","ipVersion":"${ipVersion}"}` +
      `,"l4":${l4Text(e)},"source":${src.json},"destination":${dst.json}` +
      `,"interface":${this.#interface(e.ifindex)},"is_reply":${e.isReply ? 'true' : 'false'}` +
      `,"event_type":{"type":${dropped ? 1 : 4}},"Type":"L3_L4"}`;
    return {
      json: json as JsonText<FlowEventValue>,
      subject: this.#subject(dropped, ipVersion, src.namespace, dst.namespace),
      ceSubject: e.direction === 'egress' ? src.ceSubject : dst.ceSubject,
      time,
    };
  }

  #endpoint(address: string, identity: number): EndpointText {
    const known = this.#endpoints.get(address);
    if (known?.identity === identity) return known;
    const value = endpoint(this.lookup, address, identity);
    const text: EndpointText = {
      identity,
      json: JSON.stringify(value),
      namespace: value.namespace,
      ceSubject: podCeSubject(value.namespace, value.pod_name),
    };
    this.#endpoints.set(address, text);
    return text;
  }

  #interface(ifindex: number): string {
    let text = this.#interfaces.get(ifindex);
    if (text === undefined) {
      const name = this.lookup.ifname(ifindex);
      text = JSON.stringify({ index: ifindex, ...(name === undefined ? {} : { name }) });
      this.#interfaces.set(ifindex, text);
    }
    return text;
  }

  #subject(
    dropped: boolean,
    ipVersion: Family,
    src: string | undefined,
    dst: string | undefined,
  ): string {
    // namespaces are DNS labels: no NUL; '\u0001' stands for none
    const key = `${dropped ? 'D' : 'F'}${ipVersion}\u0000${src ?? '\u0001'}\u0000${dst ?? '\u0001'}`;
    let subject = this.#subjects.get(key);
    if (subject === undefined) {
      subject = flowSubjectOf({
        node: this.lookup.node,
        verdict: dropped ? 'DROPPED' : 'FORWARDED',
        ipVersion,
        srcNamespace: src,
        dstNamespace: dst,
      });
      this.#subjects.set(key, subject);
    }
    return subject;
  }
}
