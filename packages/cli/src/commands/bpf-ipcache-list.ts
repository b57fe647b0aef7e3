import { cell } from '../output.ts';
import { mapListCommand } from './bpf-list.ts';

/** IPv4 prefixes first, then IPv6, each by address then length. */
function prefixOrder(a: string, b: string): number {
  const v6 = (p: string) => (p.includes(':') ? 1 : 0);
  return v6(a) - v6(b) || a.localeCompare(b, 'en', { numeric: true });
}

/** `dyad bpf ipcache list`: the dy_ipcache LPM map. */
export const bpfIpcacheListCommand = mapListCommand({
  words: ['bpf', 'ipcache', 'list'],
  summary: 'the dy_ipcache map (prefix -> identity and hosting node), both families',
  api: 'bpfIpcache',
  header: ['PREFIX', 'IDENTITY', 'NODE ID', 'NODE ADDRESS', 'FLAGS'],
  rows: (list) =>
    [...list]
      .sort((a, b) => prefixOrder(a.prefix, b.prefix))
      .map((e) => [
        e.prefix,
        String(e.identity),
        String(e.nodeId),
        cell(e.nodeAddress),
        e.flags & 1 ? 'local' : '-',
      ]),
});
