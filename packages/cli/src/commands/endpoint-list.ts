import type { AgentEndpointValue } from '@dyad/contracts';
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

/** The endpoints as a table, by endpoint id; `wide` adds MACs, netns, MTU, creation and the whole container id. */
export function formatEndpoints(list: readonly AgentEndpointValue[], wide = false): string {
  const header = [
    'ID',
    'POD',
    'IPV4',
    'IPV6',
    'IDENTITY',
    'POLICY (IN/OUT)',
    'STATE',
    'HOST IF',
    'CONTAINER',
    ...(wide ? ['MAC', 'HOST MAC', 'MTU', 'NETNS', 'CREATED'] : []),
  ];
  const rows = [...list]
    .sort((a, b) => a.endpointId - b.endpointId)
    .map((e) => [
      String(e.endpointId),
      `${e.pod.namespace}/${e.pod.name}`,
      cell(e.ipv4),
      cell(e.ipv6),
      String(e.identity),
      `${e.policy.ingress}/${e.policy.egress}`,
      e.phase,
      `${e.hostIfName}(${e.hostIfindex})`,
      wide ? e.containerId : e.containerId.slice(0, 12),
      ...(wide ? [cell(e.mac), cell(e.hostMac), cell(e.mtu), cell(e.netns), e.createdAt] : []),
    ]);
  return formatTable(header, rows);
}

/** `dyad endpoint list`: the pods this node's agent wired up. */
export const endpointListCommand = defineCommand({
  words: ['endpoint', 'list'],
  summary: 'endpoints of this node: id, pod, IPv4, IPv6, identity, policy state',
  description: 'Reads /v1/endpoints of the node agent: the pods it wired up, as it holds them.',
  flags: { output: outputFlag(), ...AGENT_FLAGS },
  run: async (ctx) => {
    const format = outputFormat(ctx.flags.output);
    const list = await (await openAgent(ctx)).get('endpoints');
    ctx.stdout.write(
      isStructured(format)
        ? formatStructured(format, list.raw)
        : formatEndpoints(list.body, format === 'wide'),
    );
    return Exit.ok;
  },
});
