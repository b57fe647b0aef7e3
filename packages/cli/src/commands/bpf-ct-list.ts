import type { Command } from '../command.ts';
import { Exit } from '../command.ts';
import { formatTable } from '../table.ts';
import {
  AGENT_FLAGS,
  agentArgs,
  agentGet,
  cell,
  records,
  runAgentCommand,
  writeJson,
} from './agent-api.ts';

const USAGE = `usage: dyad bpf ct list ${AGENT_FLAGS}\n`;
const PROTOS: Record<number, string> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 58: 'ICMPv6' };

function endpoint(addr: unknown, port: unknown): string {
  const a = cell(addr);
  return `${a.includes(':') ? `[${a}]` : a}:${cell(port)}`;
}

function ctFlags(v: unknown): string {
  if (typeof v !== 'number') return cell(v);
  const out: string[] = [];
  if (v & 1) out.push('seen-reply');
  if (v & 2) out.push('closing');
  return out.length ? out.join(',') : '-';
}

/** `dyad bpf ct list`: the dy_conntrack map, idle deadlines in seconds from now. */
export const bpfCtListCommand: Command = {
  words: ['bpf', 'ct', 'list'],
  summary: 'the dy_conntrack map (flows of both families, direction, expiry, counters)',
  run: (ctx) =>
    runAgentCommand(ctx, 'bpf ct list', async () => {
      const args = agentArgs(ctx, USAGE);
      const list = records(await agentGet(args.socket, '/v1/bpf/ct'), 'bpf ct');
      if (args.format === 'json') {
        writeJson(ctx, list);
        return Exit.ok;
      }
      const rows = list.map((e) => [
        typeof e.proto === 'number' ? (PROTOS[e.proto] ?? String(e.proto)) : cell(e.proto),
        endpoint(e.src, e.sport),
        endpoint(e.dst, e.dport),
        cell(e.direction),
        typeof e.expiresInS === 'number'
          ? e.expiresInS <= 0
            ? 'expired'
            : `${Math.round(e.expiresInS)}s`
          : '-',
        cell(e.packets),
        cell(e.bytes),
        cell(e.srcIdentity),
        ctFlags(e.flags),
      ]);
      ctx.stdout.write(
        formatTable(
          [
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
          rows,
        ),
      );
      return Exit.ok;
    }),
};
