import { describe, expect, it } from 'vitest';
import { ALL_DYAD_CONFIG_KEYS, DyadConfig, dyadConfigProblems } from '../src/index.ts';

const DUAL = {
  'enable-ipv4': 'true',
  'enable-ipv6': 'true',
  'cluster-pool-ipv4-cidr': '198.18.0.0/16',
  'cluster-pool-ipv6-cidr': 'fd00:10:244::/56',
  'cluster-pool-ipv4-mask-size': '24',
  'cluster-pool-ipv6-mask-size': '120',
  'ipam-primary-family': 'IPv4',
  'jetstream-replicas': '3',
  environment: 'production',
};

const V6_ONLY = {
  'enable-ipv4': 'false',
  'enable-ipv6': 'true',
  'cluster-pool-ipv6-cidr': 'fd00:10:244::/56',
  'cluster-pool-ipv6-mask-size': '120',
  'ipam-primary-family': 'IPv6',
  'jetstream-replicas': '1',
};

const without = (o: Record<string, string>, key: string): Record<string, string> =>
  Object.fromEntries(Object.entries(o).filter(([k]) => k !== key));

describe('dyad-config schema', () => {
  it('accepts dual-stack and single-family data', () => {
    expect(dyadConfigProblems(DUAL)).toEqual([]);
    expect(dyadConfigProblems(V6_ONLY)).toEqual([]);
    expect(DyadConfig.parse(DUAL)).toEqual(DUAL);
  });

  it('knows every key of a full configuration, and no other', () => {
    expect([...ALL_DYAD_CONFIG_KEYS].sort()).toEqual(Object.keys(DUAL).sort());
  });

  it("takes environment 'production' or 'test' and nothing else", () => {
    expect(dyadConfigProblems({ ...DUAL, environment: 'test' })).toEqual([]);
    expect(dyadConfigProblems({ ...DUAL, environment: 'prod' })).toEqual([
      expect.stringMatching(/^environment: /),
    ]);
  });

  it('refuses a key it does not know, naming it (a renamed key fails)', () => {
    const renamed = { ...without(DUAL, 'enable-ipv6'), 'enable-ip6': 'true' };
    const problems = dyadConfigProblems(renamed);
    expect(problems).toContain('unknown key(s): enable-ip6');
    expect(problems.some((p) => p.startsWith('enable-ipv6:'))).toBe(true);
  });

  it('refuses data without a required key', () => {
    for (const key of ['enable-ipv4', 'enable-ipv6', 'ipam-primary-family', 'jetstream-replicas']) {
      expect(dyadConfigProblems(without(DUAL, key))).toEqual([
        expect.stringMatching(new RegExp(`^${key}: `)),
      ]);
    }
  });

  it("requires an enabled family's pool and mask size, not a disabled one's", () => {
    expect(dyadConfigProblems(without(DUAL, 'cluster-pool-ipv6-cidr'))).toEqual([
      'cluster-pool-ipv6-cidr: required when enable-ipv6 is true',
    ]);
    expect(dyadConfigProblems(without(DUAL, 'cluster-pool-ipv4-mask-size'))).toEqual([
      'cluster-pool-ipv4-mask-size: required when enable-ipv4 is true',
    ]);
    expect(dyadConfigProblems(V6_ONLY)).toEqual([]);
  });

  it('refuses values a ConfigMap could hold but Dyad cannot use', () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ ...DUAL, 'enable-ipv4': 'yes' }, /^enable-ipv4: /],
      [{ ...DUAL, 'cluster-pool-ipv4-cidr': 'fd00::/56' }, /'fd00::\/56' is not an IPv4 CIDR/],
      [
        { ...DUAL, 'cluster-pool-ipv6-cidr': '198.18.0.0/15' },
        /'198.18.0.0\/15' is not an IPv6 CIDR/,
      ],
      [{ ...DUAL, 'cluster-pool-ipv4-cidr': ' , ' }, /no IPv4 CIDR/],
      [{ ...DUAL, 'cluster-pool-ipv4-mask-size': '31' }, /between 1 and 30/],
      [{ ...DUAL, 'cluster-pool-ipv6-mask-size': '/120' }, /a decimal number/],
      [{ ...DUAL, 'ipam-primary-family': 'ipv4' }, /^ipam-primary-family: /],
      [{ ...DUAL, 'jetstream-replicas': '0' }, /between 1 and 5/],
      [{ ...V6_ONLY, 'ipam-primary-family': 'IPv4' }, /IPv4 is not enabled/],
      [{ ...V6_ONLY, 'enable-ipv6': 'false' }, /enable at least one family/],
    ];
    for (const [data, want] of cases) {
      const problems = dyadConfigProblems(data);
      expect(
        problems.some((p) => want.test(p)),
        `${JSON.stringify(data)}: ${problems.join('; ')}`,
      ).toBe(true);
    }
  });

  it('takes several pools of a family, separated by commas or spaces', () => {
    const many = {
      ...DUAL,
      'cluster-pool-ipv4-cidr': '198.18.0.0/17, 198.18.128.0/17 198.19.0.0/16',
    };
    expect(dyadConfigProblems(many)).toEqual([]);
  });
});
