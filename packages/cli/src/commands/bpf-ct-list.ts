import { cell, flagNames, mapListCommand } from './agent-api.ts';

const PROTOS: Record<number, string> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 58: 'ICMPv6' };

function endpoint(addr: unknown, port: unknown): string {
  const a = cell(addr);
  return `${a.includes(':') ? `[${a}]` : a}:${cell(port)}`;
}

function expires(v: unknown): string {
  if (typeof v !== 'number') return '-';
  return v <= 0 ? 'expired' : `${Math.round(v)}s`;
}

/** `dyad bpf ct list`: the dy_conntrack map, idle deadlines in seconds from now. */
export const bpfCtListCommand = mapListCommand({
  words: ['bpf', 'ct', 'list'],
  summary: 'the dy_conntrack map (flows of both families, direction, expiry, counters)',
  path: '/v1/bpf/ct',
  what: 'bpf ct',
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
      typeof e.proto === 'number' ? (PROTOS[e.proto] ?? String(e.proto)) : cell(e.proto),
      endpoint(e.src, e.sport),
      endpoint(e.dst, e.dport),
      cell(e.direction),
      expires(e.expiresInS),
      cell(e.packets),
      cell(e.bytes),
      cell(e.srcIdentity),
      flagNames(e.flags, { 1: 'seen-reply', 2: 'closing' }),
    ]),
});
