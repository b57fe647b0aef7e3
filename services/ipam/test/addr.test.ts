import { describe, expect, it } from 'vitest';
import { parsePrefixStrict } from '@dyad/netaddr';
import {
  cidrValue,
  cidrsOverlap,
  formatIPv6,
  parseAddress,
  tryCidrValue,
  parseIPv4,
  parseIPv6,
} from '../src/addr.ts';

describe('addresses', () => {
  it('reads IPv4 and refuses what is not a dotted quad', () => {
    expect(parseIPv4('198.18.0.1')).toBe(0xc6120001n);
    for (const bad of ['198.18.0', '198.18.0.256', '198.018.0.1', '1.2.3.4.5', '', 'a.b.c.d']) {
      expect(parseIPv4(bad), bad).toBeUndefined();
    }
  });

  it('reads IPv6 in its compressed, full and mixed spellings', () => {
    expect(parseIPv6('fd00::1')).toBe((0xfd00n << 112n) | 1n);
    expect(parseIPv6('fd00:0:0:0:0:0:0:1')).toBe(parseIPv6('fd00::1'));
    expect(parseIPv6('::')).toBe(0n);
    expect(parseIPv6('::ffff:198.18.0.1')).toBe((0xffffn << 32n) | 0xc6120001n);
    for (const bad of [
      'fd00:::1',
      'fd00::1::2',
      '1:2:3:4:5:6:7:8:9',
      '12345::',
      'fd00::1%eth0',
      ':',
    ]) {
      expect(parseIPv6(bad), bad).toBeUndefined();
    }
  });

  it('writes IPv6 as RFC 5952 says: lowercase, longest zero run compressed, first on a tie', () => {
    const fmt = (s: string) => formatIPv6(parseIPv6(s) ?? -1n);
    expect(fmt('FD00:0:0:0:0:0:0:1')).toBe('fd00::1');
    expect(fmt('fd00:0:0:1:0:0:0:1')).toBe('fd00:0:0:1::1');
    expect(fmt('fd00:0:0:1:1:0:0:1')).toBe('fd00::1:1:0:0:1');
    expect(fmt('fd00:1:2:3:4:5:0:7')).toBe('fd00:1:2:3:4:5:0:7');
    expect(fmt('::')).toBe('::');
  });

  it('reads CIDRs strictly, as base and prefix', () => {
    expect(tryCidrValue('fd00::/104')).toEqual({
      family: 'IPv6',
      base: 0xfd00n << 112n,
      prefix: 104,
    });
    expect(tryCidrValue('198.18.0.0/15')).toEqual({
      family: 'IPv4',
      base: 0xc6120000n,
      prefix: 15,
    });
    for (const bad of ['198.18.0.1/16', 'fd00::1/64', '198.18.0.0/33', '198.18.0.0']) {
      expect(tryCidrValue(bad), bad).toBeUndefined();
    }
  });

  it('finds overlaps only within a family', () => {
    const c = (s: string) => cidrValue(parsePrefixStrict(s));
    expect(cidrsOverlap(c('198.18.0.0/15'), c('198.19.4.0/24'))).toBe(true);
    expect(cidrsOverlap(c('198.18.0.0/16'), c('198.19.0.0/16'))).toBe(false);
    expect(cidrsOverlap(c('fd00::/8'), c('fd00:1::/64'))).toBe(true);
    expect(parseAddress('::ffff:198.18.0.1')?.family).toBe('IPv6');
  });
});
