import { describe, expect, it } from 'vitest';
import { limitingFamily } from '../src/allocator.ts';
import {
  addBlocks,
  orderedAddresses,
  slotAddress,
  slotCapacity,
  slotIps,
  slotOf,
} from '../src/record.ts';

const v4 = { cidr: '198.18.4.0/24', gateway: '198.18.4.1' };
const v6 = { cidr: 'fd00:d1ad::400/120', gateway: 'fd00:d1ad::401' };

describe('pod slots', () => {
  it('slot n is offset 2+n of every block: both addresses of a pair share their low bits', () => {
    expect(slotIps({ IPv4: v4, IPv6: v6 }, 0, ['IPv4', 'IPv6'])).toEqual({
      IPv4: '198.18.4.2',
      IPv6: 'fd00:d1ad::402',
    });
    expect(slotIps({ IPv4: v4, IPv6: v6 }, 17, ['IPv6'])).toEqual({ IPv6: 'fd00:d1ad::413' });
    expect(slotAddress(v4, 'IPv4', 252)).toBe('198.18.4.254');
  });

  it('reads a slot back from an address, and refuses reserved and foreign ones', () => {
    expect(slotOf(v4, '198.18.4.2')).toBe(0);
    expect(slotOf(v4, '198.18.4.254')).toBe(252);
    expect(slotOf(v4, '198.18.4.255')).toBeUndefined(); // broadcast
    expect(slotOf(v4, '198.18.4.1')).toBeUndefined(); // gateway
    expect(slotOf(v6, 'fd00:d1ad::4ff')).toBe(253); // IPv6 has no broadcast
    expect(slotOf(v6, '198.18.4.7')).toBeUndefined();
  });

  it('a node has as many slots as its smallest block has pod addresses', () => {
    expect(slotCapacity({ IPv4: v4, IPv6: v6 })).toBe(253);
    expect(slotCapacity({ IPv6: v6 })).toBe(254);
    expect(slotCapacity({ IPv4: { cidr: '198.18.0.4/30', gateway: '198.18.0.5' } })).toBe(1);
    expect(slotCapacity({ IPv6: { cidr: 'fd00::/64', gateway: 'fd00::1' } })).toBe(2 ** 32);
    expect(slotCapacity({})).toBe(0);
    expect(limitingFamily({ IPv4: v4, IPv6: v6 })).toBe('IPv4');
    expect(
      limitingFamily({ IPv4: { cidr: '198.18.0.0/16', gateway: '198.18.0.1' }, IPv6: v6 }),
    ).toBe('IPv6');
  });
});

describe('node record', () => {
  it('is created with the offered blocks, and later only gains families it lacks', () => {
    const a = addBlocks(undefined, 'n1', 'u1', { IPv4: v4 }, 5);
    expect(a).toEqual({
      record: { v: 1, name: 'n1', uid: 'u1', blocks: { IPv4: v4 }, createdAt: 5 },
      added: ['IPv4'],
    });
    const other = { cidr: '198.18.9.0/24', gateway: '198.18.9.1' };
    const b = addBlocks(a.record, 'n1', 'u1', { IPv4: other, IPv6: v6 }, 9);
    expect(b.added).toEqual(['IPv6']);
    expect(b.record.blocks).toEqual({ IPv4: v4, IPv6: v6 });
    expect(b.record.createdAt).toBe(5);
    expect(a.record.blocks.IPv6).toBeUndefined();
  });

  it('addresses come in the cluster family order', () => {
    const ips = { IPv4: '198.18.0.2', IPv6: 'fd00::2' };
    expect(orderedAddresses(ips, ['IPv6', 'IPv4']).map((a) => a.family)).toEqual(['IPv6', 'IPv4']);
    expect(orderedAddresses(ips, ['IPv4', 'IPv6']).map((a) => a.family)).toEqual(['IPv4', 'IPv6']);
    expect(orderedAddresses({ IPv6: 'fd00::2' }, ['IPv4', 'IPv6'])).toEqual([
      { family: 'IPv6', address: 'fd00::2' },
    ]);
  });
});
