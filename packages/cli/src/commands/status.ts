import type { Command } from '../command.ts';
import { Exit } from '../command.ts';
import { formatTable } from '../table.ts';
import {
  AGENT_FLAGS,
  agentArgs,
  agentGet,
  cell,
  get,
  isRecord,
  records,
  runAgentCommand,
  writeJson,
} from './agent-api.ts';

const USAGE = `usage: dyad status ${AGENT_FLAGS}\n`;

function percent(entries: unknown, max: unknown): string {
  return typeof entries === 'number' && typeof max === 'number' && max > 0
    ? `${((100 * entries) / max).toFixed(1)}%`
    : '-';
}

/** The human form of the agent's /v1/status. */
export function formatStatus(s: unknown): string {
  const lines: Array<[string, string]> = [];
  const ready = get(s, 'ready') === true;
  lines.push(['Node', cell(get(s, 'node'))]);
  lines.push(['Agent', ready ? 'Ready' : `Not ready: ${cell(get(s, 'details'))}`]);
  const up = get(s, 'uptimeS');
  if (typeof up === 'number') lines.push(['Uptime', `${up}s`]);
  const servers = get(s, 'nats', 'servers');
  lines.push([
    'NATS',
    `${get(s, 'nats', 'connected') === true ? 'Connected' : 'Disconnected'} (${Array.isArray(servers) ? servers.join(', ') : '-'})`,
  ]);
  const fams = get(s, 'families');
  const famText = Array.isArray(fams)
    ? fams
        .filter(isRecord)
        .map((f) =>
          f.enabled === true
            ? `${cell(f.family)} ${f.cidr ? `${cell(f.cidr)} gw ${cell(f.gateway)}` : 'on'}`
            : `${cell(f.family)} off`,
        )
        .join(', ')
    : '-';
  lines.push(['Families', famText]);
  lines.push([
    'Endpoints',
    `${cell(get(s, 'endpoints', 'ready'))} ready, ${cell(get(s, 'endpoints', 'pending'))} pending`,
  ]);
  const r = get(s, 'restore');
  if (isRecord(r))
    lines.push([
      'Last restore',
      `kept ${cell(r.kept)}, repaired ${cell(r.replumbed)}, removed ${cell(r.removed)}, re-attached ${cell(r.reattached)}, rolled back ${cell(r.rolledBack)}, stale links ${cell(r.staleLinks)}`,
    ]);
  const writes = get(s, 'writes');
  if (isRecord(writes))
    lines.push([
      'Map writes',
      Object.entries(writes)
        .map(([m, w]) => `${m} ${cell(get(w, 'written'))} in ${cell(get(w, 'syscalls'))} syscalls`)
        .join(', '),
    ]);
  lines.push(['CNI socket', cell(get(s, 'cniSocket'))]);
  lines.push(['BPF pins', cell(get(s, 'pinDir'))]);
  const width = Math.max(...lines.map(([k]) => k.length)) + 2;
  const head = lines.map(([k, v]) => `${`${k}:`.padEnd(width)}${v}`).join('\n');
  const maps = records(get(s, 'maps') ?? [], 'maps').map((m) => [
    cell(m.name),
    cell(m.entries),
    cell(m.maxEntries),
    percent(m.entries, m.maxEntries),
  ]);
  return `${head}\n\nMaps:\n${formatTable(['NAME', 'ENTRIES', 'MAX', 'FILL'], maps)}`;
}

/** `dyad status`: agent health, families, NATS, map fill levels. Exit 0 ready, 1 not ready,
 *  3 agent unreachable. */
export const statusCommand: Command = {
  words: ['status'],
  summary: "the node agent's health, families, NATS connection and map fill levels",
  run: (ctx) =>
    runAgentCommand(ctx, 'status', async () => {
      const args = agentArgs(ctx, USAGE);
      const s = await agentGet(args.socket, '/v1/status');
      if (args.format === 'json') writeJson(ctx, s);
      else ctx.stdout.write(formatStatus(s));
      return get(s, 'ready') === true ? Exit.ok : Exit.failed;
    }),
};
