import { cell, mapListCommand } from './agent-api.ts';

/** IPv4 prefixes first, then IPv6, each by address bytes then length. */
function prefixOrder(a: string, b: string): number {
  const v6 = (p: string) => (p.includes(':') ? 1 : 0);
  return v6(a) - v6(b) || a.localeCompare(b, 'en', { numeric: true });
}

/** `dyad bpf ipcache list`: the dy_ipcache LPM map. */
export const bpfIpcacheListCommand = mapListCommand({
  words: ['bpf', 'ipcache', 'list'],
  summary: 'the dy_ipcache map (prefix -> identity and hosting node), both families',
  path: '/v1/bpf/ipcache',
  what: 'bpf ipcache',
  header: ['PREFIX', 'IDENTITY', 'NODE ID', 'NODE ADDRESS', 'FLAGS'],
  rows: (list) =>
    [...list]
      .sort((a, b) => prefixOrder(cell(a.prefix), cell(b.prefix)))
      .map((e) => [
        cell(e.prefix),
        cell(e.identity),
        cell(e.nodeId),
        cell(e.nodeAddress),
        typeof e.flags === 'number' && e.flags & 1 ? 'local' : '-',
      ]),
});
