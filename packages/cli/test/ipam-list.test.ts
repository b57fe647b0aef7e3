import { describe, expect, it } from 'vitest';
import { listing, renderListing } from '../src/commands/ipam-list.ts';
import { node, slot } from './ipam-fixtures.ts';

describe('ipam listing (pure)', () => {
  const records = [node('n2', '198.18.2', 'fd00:d1ad::2'), node('n1', '198.18.1', 'fd00:d1ad::1')];
  const slots = [
    { node: 'n1', slot: 3, value: slot(3, 'web-1', '198.18.1', 'fd00:d1ad::1') },
    { node: 'n1', slot: 0, value: slot(0, 'web-0', '198.18.1', 'fd00:d1ad::1') },
  ];

  it('counts used and free per node block and orders addresses by the cluster families', () => {
    const l = listing(['IPv6', 'IPv4'], records, slots);
    expect(l.families).toEqual(['IPv6', 'IPv4']);
    expect(l.nodes.map((n) => n.name)).toEqual(['n1', 'n2']);
    expect(l.nodes[0]?.blocks).toEqual([
      { family: 'IPv6', cidr: 'fd00:d1ad::100/120', gateway: 'fd00:d1ad::101', used: 2, free: 251 },
      { family: 'IPv4', cidr: '198.18.1.0/24', gateway: '198.18.1.1', used: 2, free: 251 },
    ]);
    expect(l.pods.map((p) => [p.pod, p.addresses.map((a) => a.address)])).toEqual([
      ['web-0', ['fd00:d1ad::102', '198.18.1.2']],
      ['web-1', ['fd00:d1ad::105', '198.18.1.5']],
    ]);
  });

  it('renders two tables', () => {
    const text = renderListing(listing(['IPv4', 'IPv6'], records, slots));
    expect(text).toContain('NODE  FAMILY  BLOCK               GATEWAY         USED  FREE');
    expect(text).toMatch(
      /n1\s+default\s+web-0\s+198\.18\.1\.2\s+fd00:d1ad::102\s+abcdef012345\s+2025-01-01/,
    );
  });
});
