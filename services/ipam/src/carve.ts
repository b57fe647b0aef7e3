import { ADDRESS_BITS } from '@dyad/netaddr';
import type { Family } from '@dyad/netaddr';
import type { CidrValue } from './addr.ts';
import { cidrContains, cidrSize, formatAddress, formatCidr } from './addr.ts';

/**
 * Carving a family's pools into node blocks, and the reserved addresses of a block. Pure.
 *
 * Blocks are numbered across the pools in the order they are listed: pool 0's blocks first. A
 * block index is only a search position: which node owns a block is decided by the KV claim.
 *
 * Reserved in every block (never given to a pod):
 * - offset 0: the network address (IPv4), the subnet-router anycast address (IPv6, RFC 4291);
 * - offset 1: the node's router (gateway) address, handed to the datapath in the node assignment;
 * - IPv4 only, the last offset: the broadcast address.
 */
export interface BlockLayout {
  readonly family: Family;
  readonly pools: readonly CidrValue[];
  readonly maskSize: number;
}

/** Reserved at the low end of every block: network/anycast and gateway. */
export const RESERVED_LOW = 2n;

/** Reserved at the high end: the IPv4 broadcast address. */
export function reservedHigh(family: Family): bigint {
  return family === 'IPv4' ? 1n : 0n;
}

/** The longest mask that still leaves one pod address in a block. */
export function maxMaskSize(family: Family): number {
  // size 4 (IPv4 /30) leaves 1 after network, gateway and broadcast; IPv6 /127 leaves none.
  return ADDRESS_BITS[family] - 2;
}

export function blocksPerPool(layout: BlockLayout, pool: CidrValue): bigint {
  return 1n << BigInt(layout.maskSize - pool.prefix);
}

export function totalBlocks(layout: BlockLayout): bigint {
  let n = 0n;
  for (const p of layout.pools) n += blocksPerPool(layout, p);
  return n;
}

/** The block at a global index, or undefined past the end. */
export function blockAt(layout: BlockLayout, index: bigint): CidrValue | undefined {
  if (index < 0n) return undefined;
  let i = index;
  const step = cidrSize({ family: layout.family, prefix: layout.maskSize });
  for (const p of layout.pools) {
    const n = blocksPerPool(layout, p);
    if (i < n) return { family: layout.family, base: p.base + i * step, prefix: layout.maskSize };
    i -= n;
  }
  return undefined;
}

/** The global index of a block of this layout, or undefined if it is not one of its blocks. */
export function blockIndexOf(layout: BlockLayout, block: CidrValue): bigint | undefined {
  if (block.family !== layout.family || block.prefix !== layout.maskSize) return undefined;
  const step = cidrSize({ family: layout.family, prefix: layout.maskSize });
  let before = 0n;
  for (const p of layout.pools) {
    if (cidrContains(p, block.family, block.base)) return before + (block.base - p.base) / step;
    before += blocksPerPool(layout, p);
  }
  return undefined;
}

export interface BlockAddresses {
  readonly cidr: string;
  readonly gateway: string;
  /** Usable offsets: first..last inclusive. */
  readonly first: bigint;
  readonly last: bigint;
  readonly usable: bigint;
}

export function blockAddresses(block: CidrValue): BlockAddresses {
  const size = cidrSize(block);
  const first = RESERVED_LOW;
  const last = size - 1n - reservedHigh(block.family);
  return {
    cidr: formatCidr(block),
    gateway: formatAddress(block.family, block.base + 1n),
    first,
    last,
    usable: last >= first ? last - first + 1n : 0n,
  };
}

/**
 * The first free position at or after `start`, wrapping from `last` to `first`; undefined when
 * every position in [first, last] is taken. Costs at most `taken`-many probes plus one, so a
 * huge range (an IPv6 /64 block, 2^56 blocks of a pool) is as cheap as a small one.
 */
export function nextFree(
  isTaken: (position: bigint) => boolean,
  takenCount: number,
  first: bigint,
  last: bigint,
  start: bigint,
): bigint | undefined {
  if (last < first) return undefined;
  const span = last - first + 1n;
  if (BigInt(takenCount) >= span) return undefined;
  let p = start < first || start > last ? first : start;
  const limit = Math.min(takenCount + 1, Number(span > 1n << 52n ? 1n << 52n : span));
  for (let i = 0; i < limit; i++) {
    if (!isTaken(p)) return p;
    p = p === last ? first : p + 1n;
  }
  return undefined;
}
