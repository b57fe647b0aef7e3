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

const USAGE = `usage: dyad bpf endpoint list ${AGENT_FLAGS}\n`;

/** Endpoint flag bits (bpf/include/dyad/common.h). */
export function endpointFlags(v: unknown): string {
  if (typeof v !== 'number') return cell(v);
  const out: string[] = [];
  if (v & 1) out.push('enforce-ingress');
  if (v & 2) out.push('enforce-egress');
  return out.length ? out.join(',') : '-';
}

/** `dyad bpf endpoint list`: the dy_endpoints map as the kernel holds it. */
export const bpfEndpointListCommand: Command = {
  words: ['bpf', 'endpoint', 'list'],
  summary: 'the dy_endpoints map (pod address -> veth, endpoint, identity, MACs)',
  run: (ctx) =>
    runAgentCommand(ctx, 'bpf endpoint list', async () => {
      const args = agentArgs(ctx, USAGE);
      const list = records(await agentGet(args.socket, '/v1/bpf/endpoints'), 'bpf endpoints');
      if (args.format === 'json') {
        writeJson(ctx, list);
        return Exit.ok;
      }
      const rows = [...list]
        .sort(
          (a, b) =>
            Number(a.endpointId) - Number(b.endpointId) ||
            cell(a.address).localeCompare(cell(b.address)),
        )
        .map((e) => [
          cell(e.address),
          cell(e.endpointId),
          cell(e.identity),
          cell(e.ifindex),
          endpointFlags(e.flags),
          cell(e.mac),
          cell(e.nodeMac),
        ]);
      ctx.stdout.write(
        formatTable(
          ['ADDRESS', 'ENDPOINT', 'IDENTITY', 'IFINDEX', 'FLAGS', 'MAC', 'NODE MAC'],
          rows,
        ),
      );
      return Exit.ok;
    }),
};
