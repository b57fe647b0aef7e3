import { describe, expect, it } from 'vitest';
import { compatibilityProblems } from '../src/compat.ts';
import { parseIpamConfig } from '../src/config.ts';

const dual = {
  'cluster-pool-ipv4-cidr': '198.18.0.0/16',
  'enable-ipv6': 'true',
  'cluster-pool-ipv6-cidr': 'fd00:d1ad::/104',
};
const claims = [
  { family: 'IPv4' as const, cidr: '198.18.3.0/24' },
  { family: 'IPv6' as const, cidr: 'fd00:d1ad::300/120' },
];

describe('a configuration taking over existing state', () => {
  it('the same configuration, an added pool, or IPv6 made primary are fine', () => {
    expect(compatibilityProblems(parseIpamConfig(dual), claims)).toEqual([]);
    const more = { ...dual, 'cluster-pool-ipv4-cidr': '198.18.0.0/16 198.19.0.0/16' };
    expect(compatibilityProblems(parseIpamConfig(more), claims)).toEqual([]);
    const v6first = { ...dual, 'ipam-primary-family': 'IPv6' };
    expect(compatibilityProblems(parseIpamConfig(v6first), claims)).toEqual([]);
  });

  it('switching IPv6 off while nodes hold IPv6 blocks is refused, naming enable-ipv6', () => {
    const off = { ...dual, 'enable-ipv6': 'false' };
    expect(compatibilityProblems(parseIpamConfig(off), claims)).toEqual([
      expect.stringMatching(
        /^enable-ipv6 is false, but nodes hold IPv6 blocks.*fd00:d1ad::300\/120/,
      ),
    ]);
  });

  it('switching a family off is fine when no node holds a block of it', () => {
    const off = { ...dual, 'enable-ipv6': 'false' };
    expect(compatibilityProblems(parseIpamConfig(off), claims.slice(0, 1))).toEqual([]);
  });

  it('a new mask size or a dropped pool is refused while nodes hold blocks', () => {
    const mask = { ...dual, 'cluster-pool-ipv4-mask-size': '25' };
    expect(compatibilityProblems(parseIpamConfig(mask), claims)).toEqual([
      expect.stringMatching(/^cluster-pool-ipv4-mask-size is 25, but nodes hold \/24 blocks/),
    ]);
    const moved = { ...dual, 'cluster-pool-ipv4-cidr': '198.19.0.0/16' };
    expect(compatibilityProblems(parseIpamConfig(moved), claims)).toEqual([
      expect.stringMatching(/^cluster-pool-ipv4-cidr no longer lists the pool.*198\.18\.3\.0\/24/),
    ]);
  });
});
