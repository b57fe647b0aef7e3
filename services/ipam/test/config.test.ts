import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatCidr } from '../src/addr.ts';
import { envNameOf, mergeConfigSources, parseIpamConfig } from '../src/config.ts';
import { IpamConfigError } from '../src/errors.ts';
import { loadSettings } from '../src/settings.ts';

function problems(raw: Record<string, string>): string[] {
  try {
    parseIpamConfig(raw);
  } catch (err) {
    if (err instanceof IpamConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

const V4 = { 'cluster-pool-ipv4-cidr': '198.18.0.0/15' };
const V6 = { 'enable-ipv6': 'true', 'cluster-pool-ipv6-cidr': 'fd00:d1ad::/104' };

describe('IPAM configuration', () => {
  it('defaults as Cilium: IPv4 only, /24 blocks', () => {
    const c = parseIpamConfig(V4);
    expect(c.families.map((l) => [l.family, l.pools.map(formatCidr), l.maskSize])).toEqual([
      ['IPv4', ['198.18.0.0/15'], 24],
    ]);
  });

  it('dual-stack: IPv4 first unless ipam-primary-family says IPv6; IPv6 blocks default /120', () => {
    expect(parseIpamConfig({ ...V4, ...V6 }).families.map((l) => [l.family, l.maskSize])).toEqual([
      ['IPv4', 24],
      ['IPv6', 120],
    ]);
    const c = parseIpamConfig({ ...V4, ...V6, 'ipam-primary-family': 'IPv6' });
    expect(c.families.map((l) => l.family)).toEqual(['IPv6', 'IPv4']);
  });

  it('IPv6 only: the v4 pool is not needed, and one listed anyway is ignored with a warning', () => {
    const c = parseIpamConfig({ ...V4, ...V6, 'enable-ipv4': 'false' });
    expect(c.families.map((l) => l.family)).toEqual(['IPv6']);
    expect(c.warnings).toEqual([expect.stringContaining('cluster-pool-ipv4-cidr is ignored')]);
  });

  it('both families off is a start-up error naming both keys', () => {
    expect(problems({ 'enable-ipv4': 'false', 'enable-ipv6': 'false' })).toEqual([
      expect.stringMatching(/enable-ipv4 and enable-ipv6 are both false/),
    ]);
  });

  it('an enabled family needs a pool', () => {
    expect(problems({ 'enable-ipv6': 'true', ...V4 })).toEqual([
      'cluster-pool-ipv6-cidr: required when enable-ipv6 is true',
    ]);
    expect(problems({})).toEqual(['cluster-pool-ipv4-cidr: required when enable-ipv4 is true']);
  });

  it('names the key of an invalid CIDR, a host-bits CIDR and a wrong-family CIDR', () => {
    expect(problems({ 'cluster-pool-ipv4-cidr': '198.18.0.0/15 bogus' })).toEqual([
      "cluster-pool-ipv4-cidr: 'bogus' is not a CIDR (no /prefix)",
    ]);
    expect(problems({ 'cluster-pool-ipv4-cidr': '198.18.0.1/16' })[0]).toMatch(
      /^cluster-pool-ipv4-cidr: .*host bits set.*198\.18\.0\.0\/16/,
    );
    expect(problems({ 'cluster-pool-ipv4-cidr': '198.18.0.0/16 fd00::/104' })).toEqual([
      'cluster-pool-ipv4-cidr: fd00::/104 is an IPv6 CIDR; it belongs in cluster-pool-ipv6-cidr',
    ]);
    expect(
      problems({ ...V4, 'enable-ipv6': 'true', 'cluster-pool-ipv6-cidr': '198.19.0.0/16' }),
    ).toEqual([
      'cluster-pool-ipv6-cidr: 198.19.0.0/16 is an IPv4 CIDR; it belongs in cluster-pool-ipv4-cidr',
    ]);
  });

  it('accepts lists separated by spaces or commas, and refuses overlapping pools', () => {
    const c = parseIpamConfig({ 'cluster-pool-ipv4-cidr': '198.18.0.0/16, 198.19.0.0/16' });
    expect(c.families[0]?.pools.map(formatCidr)).toEqual(['198.18.0.0/16', '198.19.0.0/16']);
    expect(problems({ 'cluster-pool-ipv4-cidr': '198.18.0.0/15 198.19.128.0/17' })).toEqual([
      'cluster-pool-ipv4-cidr: 198.19.128.0/17 overlaps 198.18.0.0/15',
    ]);
    expect(
      problems({ ...V4, 'enable-ipv6': 'true', 'cluster-pool-ipv6-cidr': 'fd00::/104 fd00::/112' }),
    ).toEqual(['cluster-pool-ipv6-cidr: fd00::/112 overlaps fd00::/104']);
  });

  it('a mask size must be longer than every pool prefix: /32 and /128 pools cannot be carved', () => {
    expect(
      problems({ 'cluster-pool-ipv4-cidr': '198.18.0.5/32', 'cluster-pool-ipv4-mask-size': '30' }),
    ).toEqual([
      'cluster-pool-ipv4-mask-size: 30 is not longer than the prefix of pool 198.18.0.5/32 in cluster-pool-ipv4-cidr',
    ]);
    expect(
      problems({ ...V4, 'enable-ipv6': 'true', 'cluster-pool-ipv6-cidr': 'fd00::5/128' })[0],
    ).toMatch(
      /^cluster-pool-ipv6-mask-size: 120 is not longer than the prefix of pool fd00::5\/128/,
    );
    expect(
      problems({
        'cluster-pool-ipv4-cidr': '198.18.0.0/24',
        'cluster-pool-ipv4-mask-size': '24',
      })[0],
    ).toMatch(/^cluster-pool-ipv4-mask-size: 24 is not longer/);
  });

  it('a mask size that leaves no pod address is refused; the longest usable ones are accepted', () => {
    expect(problems({ ...V4, 'cluster-pool-ipv4-mask-size': '31' })[0]).toMatch(
      /^cluster-pool-ipv4-mask-size: \/31 blocks leave no pod address.*at most 30/,
    );
    expect(problems({ ...V4, ...V6, 'cluster-pool-ipv6-mask-size': '127' })[0]).toMatch(
      /^cluster-pool-ipv6-mask-size: \/127 blocks leave no pod address.*at most 126/,
    );
    expect(problems({ ...V4, 'cluster-pool-ipv4-mask-size': 'twenty' })[0]).toMatch(
      /^cluster-pool-ipv4-mask-size: 'twenty' is not a prefix length/,
    );
    const c = parseIpamConfig({
      'cluster-pool-ipv4-cidr': '198.18.0.0/29',
      'cluster-pool-ipv4-mask-size': '30',
      'enable-ipv6': 'true',
      'cluster-pool-ipv6-cidr': 'fd00::/64',
    });
    expect(c.families.map((l) => l.maskSize)).toEqual([30, 120]);
  });

  it('booleans are true or false, and the primary family must be enabled', () => {
    expect(problems({ ...V4, 'enable-ipv4': 'yes' })).toEqual([
      "enable-ipv4: expected true or false, got 'yes'",
    ]);
    expect(problems({ ...V4, 'ipam-primary-family': 'IPv6' })).toEqual([
      'ipam-primary-family: IPv6 is not enabled (enable-ipv6 is false)',
    ]);
    expect(problems({ ...V4, 'ipam-primary-family': 'both' })[0]).toMatch(/^ipam-primary-family:/);
  });

  it('reports every problem at once', () => {
    expect(
      problems({
        'cluster-pool-ipv4-cidr': 'nope',
        'enable-ipv6': 'true',
        'cluster-pool-ipv6-cidr': 'fd00::/104',
        'cluster-pool-ipv6-mask-size': '100',
      }),
    ).toHaveLength(2);
  });
});

describe('configuration sources', () => {
  it('maps keys to DYAD_ variables; a variable wins over a ConfigMap file', () => {
    expect(envNameOf('cluster-pool-ipv4-mask-size')).toBe('DYAD_CLUSTER_POOL_IPV4_MASK_SIZE');
    const raw = mergeConfigSources(
      { DYAD_ENABLE_IPV6: 'true', UNRELATED: 'x' },
      { 'enable-ipv6': 'false', 'cluster-pool-ipv6-cidr': 'fd00::/104\n', other: 'y' },
    );
    expect(raw).toEqual({ 'enable-ipv6': 'true', 'cluster-pool-ipv6-cidr': 'fd00::/104\n' });
  });

  it("reads dyad-config's directory (DYAD_CONFIG_DIR, as the chart mounts it), under the variables", () => {
    const dir = mkdtempSync(join(tmpdir(), 'dyad-ipam-config-'));
    try {
      writeFileSync(join(dir, 'enable-ipv6'), 'true\n');
      writeFileSync(join(dir, 'cluster-pool-ipv4-cidr'), '198.18.0.0/16\n');
      writeFileSync(join(dir, 'cluster-pool-ipv6-cidr'), 'fd00:18::/104\n');
      writeFileSync(join(dir, 'jetstream-replicas'), '1\n');
      const s = loadSettings({ DYAD_CONFIG_DIR: dir, DYAD_CLUSTER_POOL_IPV4_MASK_SIZE: '26' });
      expect(s.ipam.families.map((f) => [f.family, f.maskSize])).toEqual([
        ['IPv4', 26],
        ['IPv6', 120],
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
