import { cell, flagNames, mapListCommand } from './agent-api.ts';

/** Endpoint flag bits (bpf/include/dyad/common.h). */
export function endpointFlags(v: unknown): string {
  return flagNames(v, { 1: 'enforce-ingress', 2: 'enforce-egress' });
}

/** `dyad bpf endpoint list`: the dy_endpoints map as the kernel holds it. */
export const bpfEndpointListCommand = mapListCommand({
  words: ['bpf', 'endpoint', 'list'],
  summary: 'the dy_endpoints map (pod address -> veth, endpoint, identity, MACs)',
  path: '/v1/bpf/endpoints',
  what: 'bpf endpoints',
  header: ['ADDRESS', 'ENDPOINT', 'IDENTITY', 'IFINDEX', 'FLAGS', 'MAC', 'NODE MAC'],
  rows: (list) =>
    [...list]
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
      ]),
});
