import { describe, expect, it } from 'vitest';
import { listing, renderListing } from '../src/commands/ipam-list.ts';
import { allocated, assignment } from './ipam-fixtures.ts';
import { ipamAllocSubject } from '@dyad/contracts';
import type { AddressesAllocated, PayloadOf } from '@dyad/contracts';

/** Records as their node's agent stores them: under its own node's subject. */
const stored = (values: readonly PayloadOf<typeof AddressesAllocated>[]) =>
  values.map((value) => ({ subject: ipamAllocSubject(value.node, value.containerId), value }));

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
    const l = listing(v6first as typeof nodes, stored(pods));
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
    ]);
    // offset 262 is past the /24: not in any block of n1 (a bad record), refused, counted nowhere
    expect(l.refused.map((r) => [r.subject, r.reason])).toEqual([
      [ipamAllocSubject('n1', pods[2]?.containerId ?? ''), 'outside-node-blocks'],
    ]);
  });

  it("refuses a node's record claiming another node's address, or naming another node", () => {
    // n2's agent publishes (under its own subject) an allocation of an address in n1's block
    const forged = allocated('n2', 9, 'evil', '198.19', 'fd00:d1ad::1:');
    const renamed = { ...allocated('n1', 9, 'evil-2', '198.19', 'fd00:d1ad::1:') };
    const l = listing(nodes, [
      ...stored(pods.slice(0, 2)),
      { subject: ipamAllocSubject('n2', forged.containerId), value: forged },
      // n2 writes a record naming n1 in the payload, with n1's addresses
      { subject: ipamAllocSubject('n2', renamed.containerId), value: renamed },
    ]);
    expect(l.pods.map((p) => p.pod)).toEqual(['web-0', 'web-1']);
    expect(l.refused.map((r) => [r.reason, r.detail])).toEqual([
      [
        'outside-node-blocks',
        '198.19.0.11 is not in a block of node n2 (198.18.0.0/24, fd00:d1ad::2:100/120)',
      ],
      ['subject-mismatch', 'the subject names node n2, the record n1'],
    ]);
    expect(l.nodes.find((n) => n.name === 'n1')?.blocks[0]?.used).toBe(2);
    expect(renderListing(l)).toMatch(/REFUSED RECORD\s+REASON\s+DETAIL/);
  });

  it('renders two tables (a third only for refused records)', () => {
    const text = renderListing(listing(nodes, stored(pods.slice(0, 2))));
    expect(text).toContain('NODE  FAMILY  BLOCK                 GATEWAY           USED  FREE');
    expect(text).toMatch(/n1\s+IPv4\s+198\.19\.1\.0\/24\s+198\.19\.1\.1\s+0\s+253/);
    expect(text).toMatch(
      /n1\s+default\s+web-0\s+198\.19\.0\.2\s+fd00:d1ad::1:102\s+abcdef012345\s+2025-01-01/,
    );
    expect(text).not.toContain('gone');
    expect(text).not.toContain('REFUSED');
  });
});
