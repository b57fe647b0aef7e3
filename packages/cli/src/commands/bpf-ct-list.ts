import { flagNames } from '../output.ts';
import { mapListCommand } from './bpf-list.ts';

const PROTOS: Record<number, string> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 58: 'ICMPv6' };

function endpoint(addr: string, port: number): string {
  return `${addr.includes(':') ? `[${addr}]` : addr}:${port}`;
}

function expires(s: number): string {
  return s <= 0 ? 'expired' : `${Math.round(s)}s`;
}

/** `dyad bpf ct list`: the dy_conntrack map, idle deadlines in seconds from now. */
export const bpfCtListCommand = mapListCommand({
  words: ['bpf', 'ct', 'list'],
  summary: 'the dy_conntrack map (flows of both families, direction, expiry, counters)',
  api: 'bpfCt',
  header: [
    'PROTO',
    'SOURCE',
    'DESTINATION',
    'DIRECTION',
    'EXPIRES',
    'PACKETS',
    'BYTES',
    'SRC IDENTITY',
    'FLAGS',
  ],
  rows: (list) =>
    list.map((e) => [
      PROTOS[e.proto] ?? String(e.proto),
      endpoint(e.src, e.sport),
      endpoint(e.dst, e.dport),
      e.direction,
      expires(e.expiresInS),
      String(e.packets),
      String(e.bytes),
      String(e.srcIdentity),
      flagNames(e.flags, { 1: 'seen-reply', 2: 'closing' }),
    ]),
});
