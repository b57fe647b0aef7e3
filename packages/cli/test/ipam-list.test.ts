import { describe, expect, it } from 'vitest';
import { listing, renderListing } from '../src/commands/ipam-list.ts';
import { allocated, assignment } from './ipam-fixtures.ts';

describe('ipam listing (pure)', () => {
  const nodes = [
    assignment('n2', '198.18', 'fd00:d1ad::2:'),
    assignment('n1', '198.19', 'fd00:d1ad::1:', 2),
    { ...assignment('gone', '198.18.9', 'fd00:d1ad::9:'), op: 'delete' as const },
  ];
  const pods = [
    allocated('n1', 3, 'web-1', '198.19', 'fd00:d1ad::1:'),
    allocated('n1', 0, 'web-0', '198.19', 'fd00:d1ad::1:'),
    allocated('n1', 260, 'web-2', '198.19', 'fd00:d1ad::1:', 1),
  ];

  it('lists every block of every set, with the pods each holds, in the cluster family order', () => {
    const v6first = nodes.map((n) => ({
      ...n,
      blocks: n.blocks.map((_, i, all) => all[i % 2 === 0 ? i + 1 : i - 1] ?? all[i]),
    }));
    const l = listing(v6first as typeof nodes, pods);
    expect(l.families).toEqual(['IPv6', 'IPv4']);
    expect(l.nodes.map((n) => n.name)).toEqual(['n1', 'n2']);
    expect(l.nodes[0]?.blocks.map((b) => [b.set, b.family, b.cidr, b.used, b.free])).toEqual([
      [0, 'IPv6', 'fd00:d1ad::1:100/120', 2, 252],
      [0, 'IPv4', '198.19.0.0/24', 2, 251],
      [1, 'IPv6', 'fd00:d1ad::1:200/120', 0, 254],
      [1, 'IPv4', '198.19.1.0/24', 0, 253],
    ]);
    expect(l.pods.map((p) => [p.pod, p.slot, p.addresses.map((a) => a.address)])).toEqual([
      ['web-0', 0, ['fd00:d1ad::1:102', '198.19.0.2']],
      ['web-1', 3, ['fd00:d1ad::1:105', '198.19.0.5']],
      // offset 262 is past the /24: not in any block of n1 (a bad record), listed, counted nowhere
      ['web-2', 260, ['fd00:d1ad::1:2106', '198.19.1.262']],
    ]);
  });

  it('renders two tables', () => {
    const text = renderListing(listing(nodes, pods.slice(0, 2)));
    expect(text).toContain('NODE  FAMILY  BLOCK                 GATEWAY           USED  FREE');
    expect(text).toMatch(/n1\s+IPv4\s+198\.19\.1\.0\/24\s+198\.19\.1\.1\s+0\s+253/);
    expect(text).toMatch(
      /n1\s+default\s+web-0\s+198\.19\.0\.2\s+fd00:d1ad::1:102\s+abcdef012345\s+2025-01-01/,
    );
    expect(text).not.toContain('gone');
  });
});
