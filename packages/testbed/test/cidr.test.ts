import { describe, expect, it } from 'vitest';
import { firstAddress, splitCidrs } from '../src/index.ts';

describe('cidr', () => {
  it('gives the first address of IPv4 and IPv6 service ranges (the kubernetes Service IP)', () => {
    expect(firstAddress('198.18.128.0/20')).toBe('198.18.128.1');
    expect(firstAddress('198.18.128.77/20')).toBe('198.18.128.1');
    expect(firstAddress('fd00:d1ad:5e::/112')).toBe('fd00:d1ad:5e::1');
    expect(firstAddress('fd00:0:0:1::/64')).toBe('fd00:0:0:1::1');
  });

  it('refuses malformed ranges', () => {
    expect(() => firstAddress('198.18.0.0/33')).toThrow(/prefix length/);
    expect(() => firstAddress('198.18.0/15')).toThrow(/not an IP address/);
    expect(() => firstAddress('fd00:::1/64')).toThrow(/not an IP address/);
  });

  it('splits a dual-stack flag value', () => {
    expect(splitCidrs('198.18.128.0/20, fd00:d1ad:5e::/112')).toEqual([
      '198.18.128.0/20',
      'fd00:d1ad:5e::/112',
    ]);
  });
});
