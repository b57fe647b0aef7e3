import { describe, expect, it } from 'vitest';
import { Cidr, DyadConfig, FamilyAddress, IpAddress, NetworkPolicy } from '../src/index.ts';

describe('address and prefix schemas read text with @dyad/netaddr', () => {
  it('addresses: both families, canonical or not; nothing netaddr refuses', () => {
    for (const ok of ['198.18.0.1', 'fd00::1', 'FD00:0:0:0:0:0:0:1', '::ffff:198.18.0.1']) {
      expect(IpAddress.safeParse(ok).success, ok).toBe(true);
    }
    for (const bad of [
      '198.018.0.1',
      '198.18.0.256',
      'fd00:::1',
      'fd00::1%eth0',
      '198.18.0.0/15',
    ]) {
      expect(IpAddress.safeParse(bad).success, bad).toBe(false);
    }
    expect(FamilyAddress.safeParse({ family: 'IPv4', address: 'fd00::1' }).success).toBe(false);
    expect(FamilyAddress.safeParse({ family: 'IPv6', address: 'fd00::1' }).success).toBe(true);
  });

  it('Dyad-written prefixes are strict: host bits are refused with the network meant', () => {
    expect(Cidr.safeParse('198.18.4.0/24').success).toBe(true);
    expect(Cidr.safeParse('fd00:d1ad::400/120').success).toBe(true);
    const r = Cidr.safeParse('198.18.4.7/24');
    expect(r.error?.issues[0]?.message).toBe(
      "'198.18.4.7/24' has host bits set (the network is 198.18.4.0/24)",
    );
    expect(Cidr.safeParse('fd00::1/64').success).toBe(false);
    expect(Cidr.safeParse('198.18.4.7').success).toBe(false);
  });

  it("a NetworkPolicy's ipBlock is read as Kubernetes reads it: host bits masked later", () => {
    const np = (ipBlock: object) => ({
      metadata: { namespace: 'default', name: 'np', uid: 'u', resourceVersion: '1' },
      spec: { podSelector: {}, ingress: [{ from: [{ ipBlock }] }] },
    });
    const r = NetworkPolicy.safeParse(np({ cidr: '198.18.1.77/24', except: ['198.18.1.9'] }));
    expect(r.error?.issues ?? []).toEqual([]);
    const bad = np({ cidr: '198.18.1.0/33' });
    expect(NetworkPolicy.safeParse(bad).success).toBe(false);
  });

  it('pool CIDRs in the ConfigMap say why they are refused', () => {
    const r = DyadConfig.safeParse({
      'enable-ipv4': 'true',
      'enable-ipv6': 'false',
      'cluster-pool-ipv4-cidr': '198.18.0.1/16, fd00::/56',
      'cluster-pool-ipv4-mask-size': '24',
      'ipam-primary-family': 'IPv4',
      'jetstream-replicas': '1',
    });
    expect(r.error?.issues.map((i) => i.message)).toEqual([
      "'198.18.0.1/16' has host bits set (the network is 198.18.0.0/16)",
      "'fd00::/56' is not an IPv4 CIDR",
    ]);
  });
});
