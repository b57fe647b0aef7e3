import type { NodeBlockValue } from '@dyad/contracts';
import {
  ADDRESS_BITS,
  AddressError,
  Family,
  formatIp,
  formatPrefix,
  ipFromBigInt,
  ipToBigInt,
  parseIp,
  parsePrefixStrict,
  tryParseIp,
} from '@dyad/netaddr';
import type { IpBytes, Prefix } from '@dyad/netaddr';
import type { EndpointAddress } from '../endpoint.ts';
import { NodeBlocksError } from '../errors.ts';

/**
 * A node's pod CIDRs as the agent allocates from them. Pure.
 *
 * ipam hands a node block sets: set k is the k-th block of every enabled family, and the list
 * comes set by set, in the cluster's family order within a set (IpamNodeEvent, GrowReply).
 *
 * Inside a block the rule is ipam's (services/ipam/src/carve.ts): offset 0 is reserved (IPv4
 * network, IPv6 subnet-router anycast), offset 1 is the node's router address, the pods' gateway,
 * and for IPv4 the last offset (broadcast) is reserved. Pod addresses are offsets 2.. : a /24 has
 * 253, a /120 254.
 *
 * A slot gives a pod one address per family from the same set, all at the same offset, as ipam
 * did with its single set (its slot n is offset 2+n, so set 0 here numbers slots exactly as ipam
 * did, and legacy allocations keep their slots). Slots are numbered across the sets in order: set
 * 0's slots first, then set 1's, and so on.
 */

/** A block with its numbers worked out. */
export interface PodBlock {
  readonly family: Family;
  /** Canonical text (RFC 5952), e.g. `198.18.4.0/24`. */
  readonly cidr: string;
  readonly gateway: string;
  readonly base: bigint;
  readonly prefix: number;
  /** Pod addresses in the block (offsets 2..), capped at MAX_SLOTS_PER_SET. */
  readonly podAddresses: number;
}

/** One block per family of the node, in the cluster's family order. */
export interface BlockSet {
  readonly index: number;
  readonly blocks: readonly PodBlock[];
  /** The node-wide number of this set's first slot. */
  readonly firstSlot: number;
  /** Slots in the set: the smallest number of pod addresses among its blocks. */
  readonly capacity: number;
}

export interface NodeBlocks {
  /** The cluster's family order, as the list gave it (empty when the node has no block). */
  readonly families: readonly Family[];
  readonly sets: readonly BlockSet[];
  /** Slots of the node: the sum of the sets' capacities. */
  readonly capacity: number;
}

/** One pod address with the block it came from and its gateway (an EndpointAddress). */
export interface SlotAddress extends EndpointAddress {
  readonly family: Family;
}

/**
 * Slots a set offers at most. An IPv6 block may be huge (a /64 holds 2^64 − 2 pod addresses),
 * but a slot is a JavaScript number: 2^32 per set (what the largest IPv4 block could hold) keeps
 * every slot of 2^21 sets below 2^53, and no node runs four billion pods.
 */
export const MAX_SLOTS_PER_SET = 2 ** 32;

/** Offsets 0 (network or anycast) and 1 (the gateway) of every block are never a pod's. */
const FIRST_POD_OFFSET = 2n;

export const NO_BLOCKS: NodeBlocks = { families: [], sets: [], capacity: 0 };

/** Pod addresses of a block of this size: all but offsets 0 and 1, and the IPv4 broadcast. */
export function podAddressCount(family: Family, prefix: number): bigint {
  const size = 1n << BigInt(ADDRESS_BITS[family] - prefix);
  const n = size - FIRST_POD_OFFSET - (family === Family.IPv4 ? 1n : 0n);
  return n > 0n ? n : 0n;
}

function formatAddress(family: Family, value: bigint): string {
  return formatIp(family, ipFromBigInt(family, value).bytes);
}

/** One block of the list, checked: a CIDR of its family without host bits, gateway at offset 1. */
function parseBlock(b: NodeBlockValue, at: number): PodBlock | string {
  const family = b.family;
  let network: Prefix;
  let gateway: IpBytes;
  try {
    network = parsePrefixStrict(b.cidr);
    gateway = parseIp(b.gateway);
  } catch (e) {
    if (e instanceof AddressError) return `block ${at}: ${e.message}`;
    throw e;
  }
  const cidr = formatPrefix(network);
  if (network.family !== family) return `block ${at}: ${b.cidr} is not an ${b.family} CIDR`;
  const base = ipToBigInt(network);
  // A gateway elsewhere than offset 1 could be one of the pod addresses handed out (offsets 2..).
  if (gateway.family !== family || ipToBigInt(gateway) !== base + 1n) {
    return `block ${at}: gateway ${b.gateway} is not offset 1 of ${cidr}`;
  }
  const pods = podAddressCount(b.family, network.length);
  return {
    family: b.family,
    cidr,
    gateway: formatAddress(b.family, base + 1n),
    base,
    prefix: network.length,
    podAddresses: Number(pods < BigInt(MAX_SLOTS_PER_SET) ? pods : BigInt(MAX_SLOTS_PER_SET)),
  };
}

function blockSize(b: PodBlock): bigint {
  return 1n << BigInt(ADDRESS_BITS[b.family] - b.prefix);
}

/** Two blocks that share an address would give it to two slots. */
function overlaps(blocks: readonly PodBlock[]): string[] {
  const problems: string[] = [];
  const byBase = [...blocks].sort((a, b) =>
    a.family !== b.family ? (a.family < b.family ? -1 : 1) : a.base < b.base ? -1 : 1,
  );
  for (let i = 1; i < byBase.length; i++) {
    const prev = byBase[i - 1] as PodBlock;
    const cur = byBase[i] as PodBlock;
    if (prev.family === cur.family && prev.base + blockSize(prev) > cur.base) {
      problems.push(`${prev.cidr} and ${cur.cidr} overlap`);
    }
  }
  return problems;
}

/** The families in order of first appearance: set 0's order, the cluster's. */
function familyOrder(list: readonly NodeBlockValue[]): Family[] {
  const order: Family[] = [];
  for (const b of list) if (!order.includes(b.family)) order.push(b.family);
  return order;
}

/**
 * A node's block sets from its block list (IpamNodeEvent.blocks, GrowReply.blocks). Every set must
 * hold one block of each family in the same order: ipam adds a family to every set at once, so a
 * ragged list is not one it sends. Throws NodeBlocksError naming every fault.
 */
export function parseNodeBlocks(list: readonly NodeBlockValue[]): NodeBlocks {
  if (list.length === 0) return NO_BLOCKS;
  const families = familyOrder(list);
  const problems: string[] = [];
  if (list.length % families.length !== 0) {
    problems.push(
      `${list.length} blocks do not make whole sets of ${families.length} (${families.join(', ')})`,
    );
  }
  const parsed: PodBlock[] = [];
  list.forEach((b, i) => {
    const want = families[i % families.length];
    if (b.family !== want) {
      problems.push(`block ${i} (${b.cidr}) is ${b.family}, set order says ${want ?? '?'}`);
    }
    const p = parseBlock(b, i);
    if (typeof p === 'string') problems.push(p);
    else parsed.push(p);
  });
  if (problems.length === 0) problems.push(...overlaps(parsed));
  if (problems.length > 0) throw new NodeBlocksError(problems);

  const sets: BlockSet[] = [];
  let firstSlot = 0;
  for (let at = 0; at < parsed.length; at += families.length) {
    const blocks = parsed.slice(at, at + families.length);
    // The smallest block bounds the set: a slot is one offset in every block of the set.
    const capacity = Math.min(...blocks.map((b) => b.podAddresses));
    sets.push({ index: sets.length, blocks, firstSlot, capacity });
    firstSlot += capacity;
  }
  return { families, sets, capacity: firstSlot };
}

/** The list again, in canonical text: what the allocator stores and reports as held. */
export function nodeBlockList(nb: NodeBlocks): NodeBlockValue[] {
  return nb.sets.flatMap((s) =>
    s.blocks.map((b): NodeBlockValue => ({ family: b.family, cidr: b.cidr, gateway: b.gateway })),
  );
}

/** The set a node-wide slot is in and its offset in each of the set's blocks. */
export function slotPosition(
  nb: NodeBlocks,
  slot: number,
): { readonly set: BlockSet; readonly offset: bigint } | undefined {
  if (!Number.isSafeInteger(slot) || slot < 0 || slot >= nb.capacity) return undefined;
  // Sets are few (a node's pods over a block's size), so a walk costs less than an index.
  for (const set of nb.sets) {
    if (slot < set.firstSlot + set.capacity) {
      return { set, offset: FIRST_POD_OFFSET + BigInt(slot - set.firstSlot) };
    }
  }
  return undefined;
}

function addressIn(block: PodBlock, offset: bigint): SlotAddress | undefined {
  // Unreachable as long as a set's capacity is its smallest block (parseNodeBlocks), kept so that
  // no caller can get an address past a block's end. The case a reader may expect, a family whose
  // block is smaller than the set's capacity, cannot arise: the capacity is that smaller block's
  // count. When all blocks of a family share the mask size (ipam's configuration: one mask size
  // per family, not changeable while nodes hold blocks), every set has the same capacity too, so
  // no set is cut short by another family's smaller block either.
  if (offset - FIRST_POD_OFFSET >= BigInt(block.podAddresses)) return undefined;
  return {
    family: block.family,
    address: formatAddress(block.family, block.base + offset),
    cidr: block.cidr,
    gateway: block.gateway,
  };
}

/**
 * The addresses of a slot for the families asked (default: all), in the cluster's family order;
 * undefined when the slot is outside the blocks or a family asked for has no block.
 */
export function slotAddresses(
  nb: NodeBlocks,
  slot: number,
  families: readonly Family[] = nb.families,
): SlotAddress[] | undefined {
  const pos = slotPosition(nb, slot);
  if (pos === undefined) return undefined;
  if (families.some((f) => !nb.families.includes(f))) return undefined;
  const out: SlotAddress[] = [];
  for (const block of pos.set.blocks) {
    if (!families.includes(block.family)) continue;
    const a = addressIn(block, pos.offset);
    if (a === undefined) return undefined;
    out.push(a);
  }
  return out;
}

/**
 * The slot a pod address belongs to (rebuilding from the kernel's addresses after the state file
 * is lost); undefined for text that is not an address, an address outside the node's blocks, a
 * gateway or reserved address, or one past its set's capacity.
 */
export function slotOfAddress(nb: NodeBlocks, address: string): number | undefined {
  const ip = tryParseIp(address);
  if (ip === undefined) return undefined;
  const family = ip.family;
  const value = ipToBigInt(ip);
  for (const set of nb.sets) {
    for (const block of set.blocks) {
      if (block.family !== family || value < block.base || value >= block.base + blockSize(block)) {
        continue;
      }
      const index = value - block.base - FIRST_POD_OFFSET;
      if (index < 0n || index >= BigInt(set.capacity)) return undefined;
      return set.firstSlot + Number(index);
    }
  }
  return undefined;
}
