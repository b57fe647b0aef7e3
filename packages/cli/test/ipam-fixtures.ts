import type { AddressesAllocated, IpamNodeEvent, PayloadOf } from '@dyad/contracts';

/**
 * A node's assignment as ipam publishes it: `sets` block sets, set k being `${v4}.<k>.0/24` and
 * `${v6}<k>00/120` (set by set, IPv4 first).
 */
export const assignment = (
  node: string,
  v4: string,
  v6: string,
  sets = 1,
): PayloadOf<typeof IpamNodeEvent> => ({
  op: 'upsert',
  node,
  blocks: Array.from({ length: sets }, (_, k) => [
    { family: 'IPv4' as const, cidr: `${v4}.${k}.0/24`, gateway: `${v4}.${k}.1` },
    { family: 'IPv6' as const, cidr: `${v6}${k + 1}00/120`, gateway: `${v6}${k + 1}01` },
  ]).flat(),
});

/** A sandbox's allocation record as a node agent publishes it: offset n+2 of set `set`. */
export const allocated = (
  node: string,
  n: number,
  pod: string,
  v4: string,
  v6: string,
  set = 0,
): PayloadOf<typeof AddressesAllocated> => ({
  node,
  namespace: 'default',
  pod,
  podUid: `uid-${pod}`,
  containerId: `abcdef0123456789${pod}`,
  addresses: [
    { family: 'IPv4', address: `${v4}.${set}.${n + 2}` },
    { family: 'IPv6', address: `${v6}${set + 1}${(n + 2).toString(16).padStart(2, '0')}` },
  ],
  allocatedAt: new Date(Date.UTC(2025, 0, 1)).toISOString(),
  slot: n,
});
