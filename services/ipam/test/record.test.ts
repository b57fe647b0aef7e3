import { IpamNodeRecord } from '@dyad/contracts';
import { describe, expect, it } from 'vitest';
import {
  blockList,
  canonicalBlock,
  missingBlocks,
  placeBlocks,
  sameSets,
  setsFromBlocks,
} from '../src/record.ts';
import type { NodeRecord } from '../src/record.ts';

const v4 = (n: number) => ({ cidr: `198.18.${n}.0/24`, gateway: `198.18.${n}.1` });
const v6 = (n: number) => ({
  cidr: `fd00:d1ad::${(n * 256).toString(16)}/120`,
  gateway: `fd00:d1ad::${(n * 256 + 1).toString(16)}`,
});

function rec(sets: NodeRecord['sets']): NodeRecord {
  return { v: 2, name: 'n1', uid: 'u1', sets, createdAt: 5 };
}

describe('block sets', () => {
  it('a missing node lacks every family of every set up to the target', () => {
    expect(missingBlocks(undefined, 1, ['IPv4', 'IPv6'])).toEqual([
      { set: 0, family: 'IPv4' },
      { set: 0, family: 'IPv6' },
    ]);
    const one = rec([{ IPv4: v4(1), IPv6: v6(1) }]);
    expect(missingBlocks(one, 1, ['IPv4', 'IPv6'])).toEqual([]);
    expect(missingBlocks(one, 2, ['IPv6', 'IPv4'])).toEqual([
      { set: 1, family: 'IPv6' },
      { set: 1, family: 'IPv4' },
    ]);
  });

  it('a family enabled later is missing from every set the node holds', () => {
    const v6only = rec([{ IPv6: v6(1) }, { IPv6: v6(2) }]);
    expect(missingBlocks(v6only, 2, ['IPv6', 'IPv4'])).toEqual([
      { set: 0, family: 'IPv4' },
      { set: 1, family: 'IPv4' },
    ]);
  });

  it('places claimed blocks without touching what the record holds', () => {
    const made = placeBlocks(
      undefined,
      'n1',
      'u1',
      [
        { set: 0, family: 'IPv6', block: v6(1) },
        { set: 0, family: 'IPv4', block: v4(1) },
      ],
      9,
    );
    expect(made).toEqual({ ...rec([{ IPv4: v4(1), IPv6: v6(1) }]), createdAt: 9 });
    const grown = placeBlocks(
      made,
      'n1',
      'other',
      [
        { set: 1, family: 'IPv4', block: v4(2) },
        { set: 1, family: 'IPv6', block: v6(2) },
        { set: 0, family: 'IPv4', block: v4(7) }, // already filled: kept as it was
      ],
      99,
    );
    expect(grown.sets).toEqual([
      { IPv4: v4(1), IPv6: v6(1) },
      { IPv4: v4(2), IPv6: v6(2) },
    ]);
    expect([grown.uid, grown.createdAt]).toEqual(['u1', 9]);
    expect(made.sets).toHaveLength(1);
  });

  it('lists blocks set by set, in the cluster family order within a set', () => {
    const r = rec([
      { IPv4: v4(1), IPv6: v6(1) },
      { IPv4: v4(2), IPv6: v6(2) },
    ]);
    expect(blockList(r, ['IPv6', 'IPv4']).map((b) => b.cidr)).toEqual([
      v6(1).cidr,
      v4(1).cidr,
      v6(2).cidr,
      v4(2).cidr,
    ]);
    expect(blockList(r, ['IPv4']).map((b) => b.family)).toEqual(['IPv4', 'IPv6', 'IPv4', 'IPv6']);
  });

  it('reads sets back from a flat list: the k-th block of each family forms set k', () => {
    const r = rec([
      { IPv4: v4(1), IPv6: v6(1) },
      { IPv4: v4(2), IPv6: v6(2) },
    ]);
    expect(setsFromBlocks(blockList(r, ['IPv6', 'IPv4']))).toEqual(r.sets);
    // Written otherwise (host bits, long forms) they come back canonical; garbage is left out.
    expect(
      setsFromBlocks([
        { family: 'IPv4', cidr: '198.18.1.0/24', gateway: '198.18.1.1' },
        { family: 'IPv6', cidr: 'fd00:d1ad:0:0::100/120', gateway: 'fd00:d1ad::101' },
        { family: 'IPv4', cidr: '198.18.2.0/24', gateway: '198.18.2.1' },
      ]),
    ).toEqual([{ IPv4: v4(1), IPv6: v6(1) }, { IPv4: v4(2) }]);
    expect(canonicalBlock('IPv4', 'fd00::/120')).toBeUndefined();
    expect(sameSets(r, { ...r, createdAt: 1, uid: 'x' })).toBe(true);
    expect(sameSets(r, rec([r.sets[1] ?? {}, r.sets[0] ?? {}]))).toBe(false);
  });
});

describe('node record in the bucket', () => {
  it('reads a v1 record (one block per family) as one set, and v2 as it is', () => {
    const v1 = { v: 1, name: 'n1', uid: 'u1', blocks: { IPv4: v4(1), IPv6: v6(1) }, createdAt: 5 };
    expect(IpamNodeRecord.parse(v1)).toEqual(rec([{ IPv4: v4(1), IPv6: v6(1) }]));
    expect(IpamNodeRecord.parse({ ...v1, blocks: {} }).sets).toEqual([]);
    const v2 = rec([{ IPv4: v4(1) }, { IPv4: v4(2) }]);
    expect(IpamNodeRecord.parse(v2)).toEqual(v2);
    expect(IpamNodeRecord.safeParse({ ...v2, v: 3 }).success).toBe(false);
  });
});
