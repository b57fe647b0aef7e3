import type { FlowEventValue } from '@dyad/contracts';
import type { Family } from '@dyad/netaddr';

// What `dyad observe` and `dyad monitor` print: one line per flow, as `hubble observe` does, and
// the filters both apply. Pure.

/** What the user asked to see; pods may be `name` (with --namespace) or `namespace/name`. */
export interface FlowFilter {
  readonly namespace?: string;
  readonly pod?: string;
  readonly verdict?: 'FORWARDED' | 'DROPPED';
  readonly ipVersion?: Family;
}

type End = FlowEventValue['source'];

function podMatches(end: End, pod: string, namespace: string | undefined): boolean {
  const [a, b] = pod.split('/');
  const [ns, name] = b === undefined ? [namespace, a] : [a, b];
  return end.pod_name === name && (ns === undefined || end.namespace === ns);
}

export function matchesFlow(f: FlowEventValue, q: FlowFilter): boolean {
  if (q.verdict !== undefined && f.verdict !== q.verdict) return false;
  if (q.ipVersion !== undefined && f.IP.ipVersion !== q.ipVersion) return false;
  const ends = [f.source, f.destination];
  if (q.pod !== undefined) return ends.some((e) => podMatches(e, q.pod ?? '', q.namespace));
  if (q.namespace !== undefined) return ends.some((e) => e.namespace === q.namespace);
  return true;
}

function endpointText(end: End, address: string, port: number | undefined): string {
  const who = end.pod_name === undefined ? address : `${end.namespace ?? '-'}/${end.pod_name}`;
  const at =
    port === undefined
      ? ''
      : address.includes(':') && end.pod_name === undefined
        ? `[${who}]:${port}`
        : `${who}:${port}`;
  return `${at === '' ? who : at} (ID:${end.identity})`;
}

function l4Text(f: FlowEventValue): { proto: string; sport?: number; dport?: number } {
  const l4 = f.l4;
  if ('TCP' in l4) {
    const flags = Object.keys(l4.TCP.flags).join(', ');
    return {
      proto: `TCP${flags === '' ? '' : ` Flags: ${flags}`}`,
      sport: l4.TCP.source_port,
      dport: l4.TCP.destination_port,
    };
  }
  if ('UDP' in l4)
    return { proto: 'UDP', sport: l4.UDP.source_port, dport: l4.UDP.destination_port };
  if ('SCTP' in l4)
    return { proto: 'SCTP', sport: l4.SCTP.source_port, dport: l4.SCTP.destination_port };
  if ('ICMPv4' in l4) return { proto: `ICMPv4 type ${l4.ICMPv4.type}` };
  if ('ICMPv6' in l4) return { proto: `ICMPv6 type ${l4.ICMPv6.type}` };
  return { proto: `IP protocol ${l4.protocol}` };
}

/**
 * `2026-12-06T04:40:00.123Z node-a: shop/pa:40000 (ID:65537) -> shop/pb:9999 (ID:65538)
 * ingress DROPPED (POLICY_DENIED) UDP`
 */
export function flowLine(f: FlowEventValue): string {
  const l4 = l4Text(f);
  const verdict =
    f.verdict === 'DROPPED' ? `DROPPED (${f.drop_reason_desc ?? 'UNKNOWN_REASON'})` : 'FORWARDED';
  const dir = f.traffic_direction.toLowerCase();
  const reply = f.is_reply ? ' reply' : '';
  return `${f.time} ${f.node_name}: ${endpointText(f.source, f.IP.source, l4.sport)} -> ${endpointText(f.destination, f.IP.destination, l4.dport)} ${dir}${reply} ${verdict} ${l4.proto}`;
}
