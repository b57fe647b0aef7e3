import { describe, expect, it } from 'vitest';
import type { CidrValue } from '../src/addr.ts';
import { parsePrefixStrict } from '@dyad/netaddr';
import type { Family } from '@dyad/netaddr';
import { cidrValue, formatCidr } from '../src/addr.ts';
import type { BlockLayout } from '../src/carve.ts';
import {
  blockAddresses,
  blockAt,
  blockIndexOf,
  maxMaskSize,
  nextFree,
  totalBlocks,
} from '../src/carve.ts';

function cidr(s: string): CidrValue {
  return cidrValue(parsePrefixStrict(s));
}
const layout = (family: Family, pools: string[], maskSize: number): BlockLayout => ({
  family,
  pools: pools.map(cidr),
  maskSize,
});
const at = (l: BlockLayout, i: bigint) => {
  const b = blockAt(l, i);
  return b === undefined ? undefined : formatCidr(b);
};

describe('block carving', () => {
  it('IPv4: a /15 pool gives 512 /24 blocks, in address order', () => {
    const l = layout('IPv4', ['198.18.0.0/15'], 24);
    expect(totalBlocks(l)).toBe(512n);
    expect(at(l, 0n)).toBe('198.18.0.0/24');
    expect(at(l, 1n)).toBe('198.18.1.0/24');
    expect(at(l, 256n)).toBe('198.19.0.0/24');
    expect(at(l, 511n)).toBe('198.19.255.0/24');
    expect(at(l, 512n)).toBeUndefined();
  });

  it('numbers blocks across pools in the order listed, and back', () => {
    const l = layout('IPv4', ['198.19.0.0/23', '198.18.0.0/24'], 24);
    expect([0n, 1n, 2n].map((i) => at(l, i))).toEqual([
      '198.19.0.0/24',
      '198.19.1.0/24',
      '198.18.0.0/24',
    ]);
    expect(blockIndexOf(l, cidr('198.18.0.0/24'))).toBe(2n);
    expect(blockIndexOf(l, cidr('198.18.1.0/24'))).toBeUndefined();
    expect(blockIndexOf(l, cidr('198.19.0.0/25'))).toBeUndefined();
  });

  it('IPv6: a /104 pool gives 65536 /120 blocks', () => {
    const l = layout('IPv6', ['fd00:d1ad::/104'], 120);
    expect(totalBlocks(l)).toBe(65536n);
    expect(at(l, 0n)).toBe('fd00:d1ad::/120');
    expect(at(l, 1n)).toBe('fd00:d1ad::100/120');
    expect(at(l, 65535n)).toBe('fd00:d1ad::ff:ff00/120');
  });

  it('IPv6: a /64 pool with /120 blocks is carved without enumerating its 2^56 blocks', () => {
    const l = layout('IPv6', ['fd00:1:2:3::/64'], 120);
    expect(totalBlocks(l)).toBe(1n << 56n);
    const last = (1n << 56n) - 1n;
    expect(at(l, last)).toBe('fd00:1:2:3:ffff:ffff:ffff:ff00/120');
    expect(blockIndexOf(l, cidr('fd00:1:2:3:ffff:ffff:ffff:ff00/120'))).toBe(last);
    expect(at(l, 1n << 56n)).toBeUndefined();
  });
});

describe('reserved addresses', () => {
  it('IPv4 /24: network, gateway (.1) and broadcast are reserved, 253 left from .2 to .254', () => {
    const a = blockAddresses(cidr('198.18.7.0/24'));
    expect(a).toMatchObject({
      cidr: '198.18.7.0/24',
      gateway: '198.18.7.1',
      first: 2n,
      last: 254n,
    });
    expect(a.usable).toBe(253n);
  });
  it('IPv6 /120: subnet-router anycast (::0) and gateway (::1) reserved, no broadcast', () => {
    const a = blockAddresses(cidr('fd00:d1ad::100/120'));
    expect(a).toMatchObject({ gateway: 'fd00:d1ad::101', first: 2n, last: 255n });
    expect(a.usable).toBe(254n);
  });
  it('the smallest blocks: IPv4 /30 holds one pod, IPv6 /126 two; longer masks none', () => {
    expect(blockAddresses(cidr('198.18.0.4/30')).usable).toBe(1n);
    expect(blockAddresses(cidr('fd00::4/126')).usable).toBe(2n);
    expect(blockAddresses(cidr('198.18.0.4/31')).usable).toBe(0n);
    expect(blockAddresses(cidr('198.18.0.4/32')).usable).toBe(0n);
    expect(blockAddresses(cidr('fd00::1/128')).usable).toBe(0n);
    expect(maxMaskSize('IPv4')).toBe(30);
    expect(maxMaskSize('IPv6')).toBe(126);
  });
});

describe('next free search', () => {
  const taken = (xs: number[]) => {
    const s = new Set(xs.map(BigInt));
    return [(p: bigint) => s.has(p), s.size] as const;
  };

  it('starts at the hint and skips what is taken', () => {
    expect(nextFree(...taken([2, 3, 5]), 2n, 254n, 2n)).toBe(4n);
    expect(nextFree(...taken([]), 2n, 254n, 100n)).toBe(100n);
  });
  it('wraps from the last position to the first', () => {
    expect(nextFree(...taken([253, 254]), 2n, 254n, 253n)).toBe(2n);
    expect(nextFree(...taken([2, 253, 254]), 2n, 254n, 253n)).toBe(3n);
  });
  it('a hint outside the range starts at the first position', () => {
    expect(nextFree(...taken([]), 2n, 254n, 255n)).toBe(2n);
    expect(nextFree(...taken([]), 2n, 254n, 0n)).toBe(2n);
  });
  it('reports a full range as exhausted', () => {
    expect(nextFree(...taken([2]), 2n, 2n, 2n)).toBeUndefined();
    const all = Array.from({ length: 253 }, (_, i) => i + 2);
    expect(nextFree(...taken(all), 2n, 254n, 77n)).toBeUndefined();
    expect(nextFree(...taken([]), 3n, 2n, 2n)).toBeUndefined();
  });
  it('costs what is taken, not the size of the range (a /64 block)', () => {
    let probes = 0;
    const s = new Set([5n, 6n, 7n]);
    const r = nextFree((p) => (probes++, s.has(p)), s.size, 2n, (1n << 64n) - 1n, 5n);
    expect(r).toBe(8n);
    expect(probes).toBe(4);
  });
});
