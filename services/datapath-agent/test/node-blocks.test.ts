import type { NodeBlockValue } from '@dyad/contracts';
import { describe, expect, test } from 'vitest';
import { NodeBlocksError } from '../src/errors.ts';
import {
  MAX_SLOTS_PER_SET,
  NO_BLOCKS,
  nodeBlockList,
  parseNodeBlocks,
  podAddressCount,
  slotAddresses,
  slotOfAddress,
  slotPosition,
} from '../src/ipam/blocks.ts';

const v4 = (cidr: string, gateway: string): NodeBlockValue => ({ family: 'IPv4', cidr, gateway });
const v6 = (cidr: string, gateway: string): NodeBlockValue => ({ family: 'IPv6', cidr, gateway });

// ipam's example pair: 198.18.4.19 ↔ fd00:d1ad::413 share their low bits.
const SET0 = [v4('198.18.4.0/24', '198.18.4.1'), v6('fd00:d1ad::400/120', 'fd00:d1ad::401')];
const SET1 = [v4('198.18.5.0/24', '198.18.5.1'), v6('fd00:d1ad::500/120', 'fd00:d1ad::501')];

function refused(list: readonly NodeBlockValue[]): readonly string[] {
  try {
    parseNodeBlocks(list);
  } catch (e) {
    if (e instanceof NodeBlocksError) return e.problems;
    throw e;
  }
  throw new Error('accepted');
}

describe('pod addresses per block: ipam rule (offset 0 and 1, IPv4 broadcast reserved)', () => {
  test.each([
    ['IPv4', 24, 253n],
    ['IPv4', 29, 5n],
    ['IPv4', 30, 1n],
    ['IPv4', 31, 0n],
    ['IPv6', 120, 254n],
    ['IPv6', 126, 2n],
    ['IPv6', 127, 0n],
    ['IPv6', 64, 2n ** 64n - 2n],
  ] as const)('%s /%d holds %d', (family, prefix, n) => {
    expect(podAddressCount(family, prefix)).toBe(n);
  });
});

describe('parseNodeBlocks', () => {
  test('one dual-stack set: family order as listed, capacity the smaller block (253)', () => {
    const nb = parseNodeBlocks(SET0);
    expect(nb.families).toEqual(['IPv4', 'IPv6']);
    expect(nb.sets).toHaveLength(1);
    expect(nb.capacity).toBe(253);
    expect(nb.sets[0]?.blocks.map((b) => b.podAddresses)).toEqual([253, 254]);
  });

  test('IPv6 first when the cluster lists it first; IPv6-only /120 holds 254', () => {
    expect(parseNodeBlocks([SET0[1], SET0[0]] as NodeBlockValue[]).families).toEqual([
      'IPv6',
      'IPv4',
    ]);
    expect(parseNodeBlocks([SET0[1] as NodeBlockValue]).capacity).toBe(254);
  });

  test('sets of different sizes: each set its own capacity, slots numbered set after set', () => {
    const nb = parseNodeBlocks([
      ...SET0,
      v4('198.18.6.0/25', '198.18.6.1'),
      v6('fd00:d1ad::600/121', 'fd00:d1ad::601'),
    ]);
    expect(nb.sets.map((s) => [s.firstSlot, s.capacity])).toEqual([
      [0, 253],
      [253, 125],
    ]);
    expect(nb.capacity).toBe(378);
  });

  test('an empty list is a node without blocks', () => {
    expect(parseNodeBlocks([])).toEqual(NO_BLOCKS);
  });

  test('canonical text comes back from nodeBlockList', () => {
    const nb = parseNodeBlocks([
      v4('198.18.4.0/24', '198.18.4.1'),
      v6('FD00:D1AD:0:0::400/120', 'fd00:d1ad:0::401'),
    ]);
    expect(nodeBlockList(nb)).toEqual(SET0);
  });

  test.each([
    [
      'host bits',
      [v4('198.18.4.7/24', '198.18.4.1')],
      'has host bits set (the network is 198.18.4.0/24)',
    ],
    [
      'gateway not offset 1',
      [v4('198.18.4.0/24', '198.18.4.2')],
      'is not offset 1 of 198.18.4.0/24',
    ],
    ['gateway of the other family', [v4('198.18.4.0/24', 'fd00::1')], 'is not offset 1'],
    [
      'an IPv6 CIDR called IPv4',
      [v4('fd00:d1ad::400/120', 'fd00:d1ad::401')],
      'is not an IPv4 CIDR',
    ],
    ['not a CIDR', [v4('198.18.4.0', '198.18.4.1')], 'is not a CIDR'],
    ['garbage', [v4('198.18.4.x/24', '198.18.4.1')], 'is not a CIDR'],
    ['a ragged list', [...SET0, SET1[0] as NodeBlockValue], 'do not make whole sets of 2'],
    [
      'a set out of family order',
      [...SET0, SET1[1], SET1[0]] as NodeBlockValue[],
      'set order says IPv4',
    ],
    ['the same block twice', [...SET0, ...SET0], 'overlap'],
    [
      'a block inside another',
      [v4('198.18.4.0/24', '198.18.4.1'), v4('198.18.4.128/25', '198.18.4.129')],
      'overlap',
    ],
  ])('refuses %s', (_name, list, problem) => {
    expect(refused(list).join('\n')).toContain(problem);
  });

  test('names every fault at once', () => {
    expect(
      refused([v4('198.18.4.7/24', '198.18.4.1'), v4('198.18.5.0/24', '198.18.5.9')]),
    ).toHaveLength(2);
  });

  test('a huge IPv6 block is capped at MAX_SLOTS_PER_SET slots', () => {
    const nb = parseNodeBlocks([v6('fd00:d1ad:0:1::/64', 'fd00:d1ad:0:1::1')]);
    expect(nb.capacity).toBe(MAX_SLOTS_PER_SET);
    const last = MAX_SLOTS_PER_SET - 1; // offset 2 + 2^32 − 1 = 0x1_0000_0001
    expect(slotAddresses(nb, last)?.[0]?.address).toBe('fd00:d1ad:0:1:0:1:0:1');
    expect(slotOfAddress(nb, 'fd00:d1ad:0:1:0:1:0:1')).toBe(last);
    expect(slotOfAddress(nb, 'fd00:d1ad:0:1:0:1:0:2')).toBeUndefined();
  });

  test('a block without pod addresses gives its set no slot', () => {
    const nb = parseNodeBlocks([
      v4('198.18.4.0/30', '198.18.4.1'),
      v4('198.18.4.4/31', '198.18.4.5'),
    ]);
    expect(nb.sets.map((s) => s.capacity)).toEqual([1, 0]);
    expect(slotAddresses(nb, 1)).toBeUndefined();
  });
});

describe('slots', () => {
  const nb = parseNodeBlocks([...SET0, ...SET1]);

  test('slot n of set 0 is offset 2+n of every block, as ipam numbered them', () => {
    expect(slotAddresses(nb, 17)).toEqual([
      { family: 'IPv4', address: '198.18.4.19', cidr: '198.18.4.0/24', gateway: '198.18.4.1' },
      {
        family: 'IPv6',
        address: 'fd00:d1ad::413',
        cidr: 'fd00:d1ad::400/120',
        gateway: 'fd00:d1ad::401',
      },
    ]);
    expect(slotPosition(nb, 17)).toMatchObject({ set: { index: 0 }, offset: 19n });
  });

  test('the last slot of a set stops before the IPv4 broadcast; the next is the next set', () => {
    expect(slotAddresses(nb, 252)?.map((a) => a.address)).toEqual([
      '198.18.4.254',
      'fd00:d1ad::4fe',
    ]);
    expect(slotAddresses(nb, 253)?.map((a) => a.address)).toEqual(['198.18.5.2', 'fd00:d1ad::502']);
    expect(slotPosition(nb, 253)).toMatchObject({ set: { index: 1 }, offset: 2n });
  });

  test('one family asked: only its address; order is the cluster order whatever is asked', () => {
    expect(slotAddresses(nb, 0, ['IPv6'])?.map((a) => a.address)).toEqual(['fd00:d1ad::402']);
    expect(slotAddresses(nb, 0, ['IPv6', 'IPv4'])?.map((a) => a.family)).toEqual(['IPv4', 'IPv6']);
  });

  test('outside the blocks, or a family the blocks lack: no addresses', () => {
    for (const slot of [-1, 506, 1.5, Number.NaN]) expect(slotAddresses(nb, slot)).toBeUndefined();
    const v4only = parseNodeBlocks([SET0[0] as NodeBlockValue]);
    expect(slotAddresses(v4only, 0, ['IPv6'])).toBeUndefined();
  });

  test('slotOfAddress inverts slotAddresses for every slot and family', () => {
    for (let slot = 0; slot < nb.capacity; slot++) {
      for (const a of slotAddresses(nb, slot) ?? [])
        expect(slotOfAddress(nb, a.address)).toBe(slot);
    }
  });

  test.each([
    ['a gateway', '198.18.4.1'],
    ['a network address', '198.18.5.0'],
    ['the IPv6 anycast address', 'fd00:d1ad::500'],
    ['the IPv4 broadcast', '198.18.4.255'],
    ['an IPv6 address past the set capacity (the IPv4 block is smaller)', 'fd00:d1ad::4ff'],
    ['an address of no block', '198.18.9.2'],
    ['text that is no address', 'pod-1'],
  ])('slotOfAddress: no slot for %s', (_name, address) => {
    expect(slotOfAddress(nb, address)).toBeUndefined();
  });

  test('slotOfAddress reads any spelling of an address', () => {
    expect(slotOfAddress(nb, 'FD00:D1AD:0:0:0:0:0:413')).toBe(17);
  });
});
