import { describe, expect, it } from 'vitest';
import type { BlockClaim, MissSince, PodsView, SlotView } from '../src/gc.ts';
import { planNodeGc, planOrphanBlocks, planPodGc } from '../src/gc.ts';
import type { NodeRecord } from '../src/record.ts';

const GRACE = 60_000;
const T0 = 1_000_000;

function rec(name: string, createdAt = 0): NodeRecord {
  return {
    v: 1,
    name,
    uid: `uid-${name}`,
    blocks: { IPv4: { cidr: '198.18.0.0/24', gateway: '198.18.0.1' } },
    createdAt,
  };
}
function slot(n: number, podUid: string, at: number, rev = n + 100): SlotView {
  return {
    node: 'n1',
    slot: n,
    rev,
    record: {
      containerId: `c${n}`,
      namespace: 'd',
      pod: `p${n}`,
      podUid,
      ips: { IPv4: `198.18.0.${n + 2}` },
      at,
    },
  };
}
const view = (live: string[], gone: [string, number][] = []): PodsView => ({
  live: new Set(live),
  goneAt: new Map(gone),
});

describe('pod GC plan', () => {
  it('never releases a live pod, however old', () => {
    const missed: MissSince = new Map();
    const s = [slot(0, 'p1', 0)];
    expect(planPodGc(s, view(['p1']), missed, T0, GRACE)).toEqual([]);
    expect(planPodGc(s, view(['p1']), missed, T0 + 10 * GRACE, GRACE)).toEqual([]);
  });

  it('a pod missing from the stream is released after it has been missed for the grace period', () => {
    const missed: MissSince = new Map();
    const s = [slot(0, 'p1', 0)];
    expect(planPodGc(s, view([]), missed, T0, GRACE)).toEqual([]);
    expect(planPodGc(s, view([]), missed, T0 + GRACE - 1, GRACE)).toEqual([]);
    expect(planPodGc(s, view([]), missed, T0 + GRACE, GRACE)).toEqual(s);
  });

  it('a pod that comes back is forgotten: its clock starts again', () => {
    const missed: MissSince = new Map();
    const s = [slot(0, 'p1', 0)];
    planPodGc(s, view([]), missed, T0, GRACE);
    planPodGc(s, view(['p1']), missed, T0 + 1, GRACE);
    expect(planPodGc(s, view([]), missed, T0 + GRACE, GRACE)).toEqual([]);
  });

  it('a new claim of the same slot starts its own clock', () => {
    const missed: MissSince = new Map();
    planPodGc([slot(0, 'p1', 0, 100)], view([]), missed, T0, GRACE);
    expect(planPodGc([slot(0, 'p2', 0, 200)], view([]), missed, T0 + GRACE, GRACE)).toEqual([]);
  });

  it('a pod merely absent (no tombstone) waits the longer absent grace period', () => {
    const missed: MissSince = new Map();
    const s = [slot(0, 'p1', 0)];
    expect(planPodGc(s, view([]), missed, T0, GRACE, 10 * GRACE)).toEqual([]);
    expect(planPodGc(s, view([]), missed, T0 + GRACE, GRACE, 10 * GRACE)).toEqual([]);
    expect(planPodGc(s, view([]), missed, T0 + 10 * GRACE, GRACE, 10 * GRACE)).toEqual(s);
    // with a tombstone the short grace applies
    const m2: MissSince = new Map();
    expect(planPodGc(s, view([], [['p1', T0 - GRACE]]), m2, T0, GRACE, 10 * GRACE)).toEqual(s);
  });

  it('a tombstone older than the grace period releases at once; a recent allocation waits', () => {
    const missed: MissSince = new Map();
    const s = [slot(0, 'p1', 0), slot(1, 'p2', T0 - 10)];
    const plan = planPodGc(
      s,
      view(
        [],
        [
          ['p1', T0 - GRACE],
          ['p2', T0 - GRACE],
        ],
      ),
      missed,
      T0,
      GRACE,
    );
    expect(plan.map((c) => c.record.containerId)).toEqual(['c0']);
  });
});

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
  it('a claim no record uses is an orphan once older than the grace period', () => {
    const records = new Map([['n1', rec('n1')]]);
    const claims = [
      claim('n1', '198.18.0.0/24', 0), // used by n1's record
      claim('n1', '198.18.9.0/24', 0), // n1 uses another block: lost race, never withdrawn
      claim('n2', '198.18.8.0/24', 0), // no record for n2
      claim('n3', '198.18.7.0/24', T0 - 1), // too young: its record may be being written
    ];
    expect(planOrphanBlocks(claims, records, T0, GRACE).map((c) => c.cidr)).toEqual([
      '198.18.9.0/24',
      '198.18.8.0/24',
    ]);
  });
});
