import type { IpamNodeRecordValue, IpamSlotRecordValue } from '@dyad/contracts';

/** A node record and a slot record as ipam writes them. */
export const node = (name: string, v4: string, v6: string): IpamNodeRecordValue => ({
  v: 1,
  name,
  uid: `uid-${name}`,
  blocks: {
    IPv4: { cidr: `${v4}.0/24`, gateway: `${v4}.1` },
    IPv6: { cidr: `${v6}00/120`, gateway: `${v6}01` },
  },
  createdAt: 0,
});
export const slot = (n: number, pod: string, v4: string, v6: string): IpamSlotRecordValue => ({
  containerId: `abcdef0123456789${n}`,
  namespace: 'default',
  pod,
  podUid: `uid-${pod}`,
  ips: { IPv4: `${v4}.${n + 2}`, IPv6: `${v6}${(n + 2).toString(16).padStart(2, '0')}` },
  at: Date.UTC(2025, 0, 1),
});
