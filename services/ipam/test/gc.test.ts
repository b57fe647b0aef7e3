import { describe, expect, it } from 'vitest';
import type { BlockClaim, MissSince } from '../src/gc.ts';
import { planNodeGc, planOrphanBlocks } from '../src/gc.ts';
import type { NodeRecord } from '../src/record.ts';

const GRACE = 60_000;
const T0 = 1_000_000;

function rec(name: string, createdAt = 0): NodeRecord {
  return {
    v: 2,
    name,
    uid: `uid-${name}`,
    sets: [
      { IPv4: { cidr: '198.18.0.0/24', gateway: '198.18.0.1' } },
      { IPv4: { cidr: '198.18.5.0/24', gateway: '198.18.5.1' } },
    ],
    createdAt,
  };
}

describe('node GC plan', () => {
  const nodes = (entries: [string, boolean, number][]) => ({
    nodes: new Map(entries.map(([n, live, since]) => [n, { live, since }])),
  });

  it('keeps live nodes; removes a node deleted for the grace period', () => {
    const missed: MissSince = new Map();
    const r = [rec('live'), rec('gone', 5)];
    const v = nodes([
      ['live', true, 0],
      ['gone', false, T0 - GRACE],
    ]);
    expect(planNodeGc(r, v, missed, T0, GRACE)).toEqual([{ node: 'gone', createdAt: 5 }]);
  });

  it('a node absent from the stream waits its grace period from the first miss', () => {
    const missed: MissSince = new Map();
    const r = [rec('ghost')];
    const v = nodes([['other', true, 0]]);
    expect(planNodeGc(r, v, missed, T0, GRACE)).toEqual([]);
    expect(planNodeGc(r, v, missed, T0 + GRACE, GRACE)).toHaveLength(1);
  });
});

describe('orphan block claims', () => {
  const claim = (node: string, cidr: string, at: number): BlockClaim => ({
    key: `block.IPv4.${cidr}`,
    family: 'IPv4',
    cidr,
    node,
    at,
    revision: 1,
  });
  it("a claim no record uses is an orphan once older than the grace period, unless its node's agent holds it", () => {
    const records = new Map([['n1', rec('n1')]]);
    const claims = [
      claim('n1', '198.18.0.0/24', 0), // used by n1's record, set 0
      claim('n1', '198.18.5.0/24', 0), // used by n1's record, set 1
      claim('n1', '198.18.9.0/24', 0), // n1 uses another block: lost race, never withdrawn
      claim('n2', '198.18.8.0/24', 0), // no record for n2
      claim('n3', '198.18.7.0/24', T0 - 1), // too young: its record may be being written
      claim('n4', '198.18.6.0/24', 0), // no record, but n4's agent holds it: rebuilt, not freed
      claim('n5', '198.18.4.0/24', 0), // no record; n4 (another node) holds it: still n5's orphan
    ];
    const heldBy = (node: string, _f: string, cidr: string) =>
      (node === 'n4' && cidr === '198.18.6.0/24') || (node === 'n4' && cidr === '198.18.4.0/24');
    expect(planOrphanBlocks(claims, records, heldBy, T0, GRACE).map((c) => c.cidr)).toEqual([
      '198.18.9.0/24',
      '198.18.8.0/24',
      '198.18.4.0/24',
    ]);
  });
});
