import { flagNames } from '../output.ts';
import { mapListCommand } from './bpf-list.ts';

/** `[addr]:port` for IPv6, `addr:port` for IPv4. */
export function hostPort(addr: string, port: number): string {
  return `${addr.includes(':') ? `[${addr}]` : addr}:${port}`;
}

/**
 * `dyad bpf lb list`: every frontend of dy_lb_services with the backends of its Maglev table,
 * one line per backend (as `cilium-dbg bpf lb list`), each with its share of the table's slots.
 */
export const bpfLbListCommand = mapListCommand({
  words: ['bpf', 'lb', 'list'],
  summary: 'the dy_lb_* maps: each Service frontend and the backends of its Maglev table',
  api: 'bpfLb',
  header: ['SERVICE ADDRESS', 'PROTO', 'ID', 'BACKEND ADDRESS', 'BACKEND ID', 'SLOTS', 'FLAGS'],
  rows: (list) =>
    [...list]
      .sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port))
      .flatMap((f) => {
        const front = hostPort(f.address, f.port);
        const flags = [
          flagNames(f.flags, { 1: 'affinity', 2: 'nodeport', 4: 'local' }),
          ...(f.flags & 1 ? [`timeout=${f.affinityTimeoutS}s`] : []),
        ].join(' ');
        if (f.slots.length === 0)
          return [
            [
              front,
              f.protocol,
              String(f.id),
              f.flags & 4 ? '(no local backend: dropped)' : '(no backend: refused)',
              '-',
              '0',
              flags,
            ],
          ];
        return [...f.slots]
          .sort((a, b) => a.backendId - b.backendId)
          .map((s) => [
            front,
            f.protocol,
            String(f.id),
            s.address !== undefined && s.port !== undefined
              ? hostPort(s.address, s.port)
              : '(missing)',
            String(s.backendId),
            String(s.slots),
            [flags, flagNames(s.backendFlags ?? 0, { 1: 'terminating' })]
              .filter((x) => x !== '' && x !== '-')
              .join(' ') || '-',
          ]);
      }),
});
