import type { Command } from '../command.ts';
import { Exit } from '../command.ts';
import { formatTable } from '../table.ts';
import {
  AGENT_FLAGS,
  agentArgs,
  agentGet,
  cell,
  get,
  records,
  runAgentCommand,
  writeJson,
} from './agent-api.ts';

const USAGE = `usage: dyad endpoint list ${AGENT_FLAGS}\n`;

function policy(e: Record<string, unknown>): string {
  const i = get(e, 'policy', 'ingress') === 'enforcing' ? 'enforcing' : 'disabled';
  const o = get(e, 'policy', 'egress') === 'enforcing' ? 'enforcing' : 'disabled';
  return `${i}/${o}`;
}

export function formatEndpoints(list: ReadonlyArray<Record<string, unknown>>): string {
  const rows = [...list]
    .sort((a, b) => Number(a.endpointId) - Number(b.endpointId))
    .map((e) => [
      cell(e.endpointId),
      `${cell(get(e, 'pod', 'namespace'))}/${cell(get(e, 'pod', 'name'))}`,
      cell(e.ipv4),
      cell(e.ipv6),
      cell(e.identity),
      policy(e),
      cell(e.phase),
      `${cell(e.hostIfName)}(${cell(e.hostIfindex)})`,
      cell(e.containerId).slice(0, 12),
    ]);
  return formatTable(
    ['ID', 'POD', 'IPV4', 'IPV6', 'IDENTITY', 'POLICY (IN/OUT)', 'STATE', 'HOST IF', 'CONTAINER'],
    rows,
  );
}

/** `dyad endpoint list`: the pods this node's agent wired up. */
export const endpointListCommand: Command = {
  words: ['endpoint', 'list'],
  summary: 'endpoints of this node: id, pod, IPv4, IPv6, identity, policy state',
  run: (ctx) =>
    runAgentCommand(ctx, 'endpoint list', async () => {
      const args = agentArgs(ctx, USAGE);
      const list = records(await agentGet(args.socket, '/v1/endpoints'), 'endpoints');
      if (args.format === 'json') writeJson(ctx, list);
      else ctx.stdout.write(formatEndpoints(list));
      return Exit.ok;
    }),
};
