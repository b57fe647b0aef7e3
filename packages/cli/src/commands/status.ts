import type { AgentStatusValue } from '@dyad/contracts';
import { Exit, defineCommand } from '../command.ts';
import { AGENT_FLAGS, openAgent } from '../agent/target.ts';
import {
  cell,
  formatStructured,
  formatTable,
  isStructured,
  outputFlag,
  outputFormat,
} from '../output.ts';

function percent(entries: number, max: number): string {
  return max > 0 ? `${((100 * entries) / max).toFixed(1)}%` : '-';
}

/** The human form of the agent's /v1/status; `wide` adds every map mirror's write counters. */
export function formatStatus(s: AgentStatusValue, wide = false): string {
  const lines: Array<[string, string]> = [];
  lines.push(['Node', s.node]);
  lines.push(['Agent', s.ready ? 'Ready' : `Not ready: ${cell(s.details)}`]);
  lines.push(['Uptime', `${s.uptimeS}s`]);
  lines.push([
    'NATS',
    `${s.nats.connected ? 'Connected' : 'Disconnected'} (${s.nats.servers.join(', ') || '-'})`,
  ]);
  lines.push([
    'Families',
    s.families
      .map((f) =>
        f.enabled
          ? `${f.family} ${f.cidr !== undefined ? `${f.cidr} gw ${cell(f.gateway)}` : 'on'}`
          : `${f.family} off`,
      )
      .join(', ') || '-',
  ]);
  lines.push(['Endpoints', `${s.endpoints.ready} ready, ${s.endpoints.pending} pending`]);
  const r = s.restore;
  if (r !== undefined)
    lines.push([
      'Last restore',
      `kept ${r.kept}, repaired ${r.replumbed}, removed ${r.removed}, re-attached ${r.reattached}, rolled back ${r.rolledBack}, stale links ${r.staleLinks}`,
    ]);
  lines.push([
    'Map writes',
    Object.entries(s.writes)
      .map(([m, w]) => `${m} ${w.written} in ${w.syscalls} syscalls`)
      .join(', ') || '-',
  ]);
  lines.push(['CNI socket', cell(s.cniSocket)]);
  lines.push(['BPF pins', cell(s.pinDir)]);
  const width = Math.max(...lines.map(([k]) => k.length)) + 2;
  const head = lines.map(([k, v]) => `${`${k}:`.padEnd(width)}${v}`).join('\n');
  const maps = s.maps.map((m) => [
    m.name,
    String(m.entries),
    String(m.maxEntries),
    percent(m.entries, m.maxEntries),
  ]);
  const out = `${head}\n\nMaps:\n${formatTable(['NAME', 'ENTRIES', 'MAX', 'FILL'], maps)}`;
  if (!wide) return out;
  const writes = Object.entries(s.writes).map(([m, w]) => [
    m,
    String(w.syscalls),
    String(w.written),
    String(w.deleted),
    String(w.unchanged),
  ]);
  return `${out}\nMap writes:\n${formatTable(['MIRROR', 'SYSCALLS', 'WRITTEN', 'DELETED', 'UNCHANGED'], writes)}`;
}

/** `dyad status`: exit 0 ready, 1 not ready, 3 agent unreachable. */
export const statusCommand = defineCommand({
  words: ['status'],
  summary: "the node agent's health, families, NATS connection and map fill levels",
  description:
    'Reads /v1/status of the node agent. Exit 0 when the agent is ready, 1 when it is not, 3 when no agent answers.',
  flags: { output: outputFlag(), ...AGENT_FLAGS },
  run: async (ctx) => {
    const format = outputFormat(ctx.flags.output);
    const agent = await openAgent(ctx);
    const s = await agent.get('status');
    ctx.stdout.write(
      isStructured(format)
        ? formatStructured(format, s.raw)
        : formatStatus(s.body, format === 'wide'),
    );
    return s.body.ready ? Exit.ok : Exit.failed;
  },
});
