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

const USAGE = `usage: dyad bpf ipcache list ${AGENT_FLAGS}\n`;

/** IPv4 prefixes first, then IPv6, each by address bytes then length. */
function prefixOrder(a: string, b: string): number {
  const v6 = (p: string) => (p.includes(':') ? 1 : 0);
  return v6(a) - v6(b) || a.localeCompare(b, 'en', { numeric: true });
}

/** `dyad bpf ipcache list`: the dy_ipcache LPM map. */
export const bpfIpcacheListCommand: Command = {
  words: ['bpf', 'ipcache', 'list'],
  summary: 'the dy_ipcache map (prefix -> identity and hosting node), both families',
  run: (ctx) =>
    runAgentCommand(ctx, 'bpf ipcache list', async () => {
      const args = agentArgs(ctx, USAGE);
      const list = records(await agentGet(args.socket, '/v1/bpf/ipcache'), 'bpf ipcache');
      if (args.format === 'json') {
        writeJson(ctx, list);
        return Exit.ok;
      }
      const rows = [...list]
        .sort((a, b) => prefixOrder(cell(a.prefix), cell(b.prefix)))
        .map((e) => [
          cell(e.prefix),
          cell(e.identity),
          cell(e.nodeId),
          cell(e.nodeAddress),
          typeof e.flags === 'number' && e.flags & 1 ? 'local' : '-',
        ]);
      ctx.stdout.write(
        formatTable(['PREFIX', 'IDENTITY', 'NODE ID', 'NODE ADDRESS', 'FLAGS'], rows),
      );
      return Exit.ok;
    }),
};
