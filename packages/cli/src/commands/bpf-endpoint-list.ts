import { flagNames } from '../output.ts';
import { mapListCommand } from './bpf-list.ts';

/** Endpoint flag bits (bpf/include/dyad/common.h). */
export function endpointFlags(v: number): string {
  return flagNames(v, { 1: 'enforce-ingress', 2: 'enforce-egress' });
}

/** `dyad bpf endpoint list`: the dy_endpoints map as the kernel holds it. */
export const bpfEndpointListCommand = mapListCommand({
  words: ['bpf', 'endpoint', 'list'],
  summary: 'the dy_endpoints map (pod address -> veth, endpoint, identity, MACs)',
  api: 'bpfEndpoints',
  header: ['ADDRESS', 'ENDPOINT', 'IDENTITY', 'IFINDEX', 'FLAGS', 'MAC', 'NODE MAC'],
  rows: (list) =>
    [...list]
      .sort((a, b) => a.endpointId - b.endpointId || a.address.localeCompare(b.address))
      .map((e) => [
        e.address,
        String(e.endpointId),
        String(e.identity),
        String(e.ifindex),
        endpointFlags(e.flags),
        e.mac,
        e.nodeMac,
      ]),
});
