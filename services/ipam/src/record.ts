import type { Family, IpamNodeRecordValue, IpamSlotRecordValue } from '@dyad/contracts';
import { formatAddress, parseAddress, parseCidr } from './addr.ts';
import { RESERVED_LOW, blockAddresses } from './carve.ts';

/**
 * Node records and pod slots, pure. A node has one block per family; slot n of the node is the
 * address at offset 2+n (past the reserved network/anycast and gateway) of every one of its
 * blocks. A sandbox holds one slot, so one claim gives it one address per family, and the
 * addresses of a pair share their offset: 198.18.4.19 goes with fd00:d1ad::413.
 */
export type NodeRecord = IpamNodeRecordValue;
export type SlotRecord = IpamSlotRecordValue;
export type BlockRef = { readonly cidr: string; readonly gateway: string };
export type NodeBlocks = NodeRecord['blocks'];

/** At most this many slots per node: far above any pod count, and slot numbers stay small. */
export const MAX_SLOTS = 2 ** 32;

const capacities = new WeakMap<NodeBlocks, number>();

/** Slots in a node: the usable addresses of its smallest block (0 without blocks). */
export function slotCapacity(blocks: NodeBlocks): number {
  // Every request asks, with the same few records: parsing their CIDRs each time showed in profiles.
  let c = capacities.get(blocks);
  if (c === undefined) {
    c = computeCapacity(blocks);
    capacities.set(blocks, c);
  }
  return c;
}

function computeCapacity(blocks: NodeBlocks): number {
  let cap: bigint | undefined;
  for (const f of ['IPv4', 'IPv6'] as const) {
    const b = blocks[f];
    if (b === undefined) continue;
    const p = parseCidr(b.cidr);
    if (!p.ok) return 0;
    const u = blockAddresses(p.cidr).usable;
    cap = cap === undefined || u < cap ? u : cap;
  }
  if (cap === undefined) return 0;
  return cap > BigInt(MAX_SLOTS) ? MAX_SLOTS : Number(cap);
}

/** The address of slot n in a block. */
const bases = new Map<string, bigint>();

/** A block's base address; blocks are few and every allocation asks, so the parse is kept. */
function baseOf(cidr: string): bigint {
  let b = bases.get(cidr);
  if (b === undefined) {
    const p = parseCidr(cidr);
    if (!p.ok) throw new Error(`invalid block ${cidr}: ${p.reason}`);
    b = p.cidr.base;
    if (bases.size > 65_536) bases.clear();
    bases.set(cidr, b);
  }
  return b;
}

export function slotAddress(block: BlockRef, family: Family, slot: number): string {
  return formatAddress(family, baseOf(block.cidr) + RESERVED_LOW + BigInt(slot));
}

/** The slot an address of a block is, or undefined if it is reserved or outside. */
export function slotOf(block: BlockRef, address: string): number | undefined {
  const p = parseCidr(block.cidr);
  const a = parseAddress(address);
  if (!p.ok || a === undefined || a.family !== p.cidr.family) return undefined;
  const b = blockAddresses(p.cidr);
  const off = a.value - p.cidr.base;
  if (off < b.first || off > b.last) return undefined;
  return Number(off - RESERVED_LOW);
}

/** The slot's addresses for the families asked, in the order asked. */
export function slotIps(
  blocks: NodeBlocks,
  slot: number,
  families: readonly Family[],
): { IPv4?: string; IPv6?: string } {
  const ips: { IPv4?: string; IPv6?: string } = {};
  for (const f of families) {
    const b = blocks[f];
    if (b !== undefined) ips[f] = slotAddress(b, f, slot);
  }
  return ips;
}

/**
 * Adds the offered blocks of families the record lacks; creates the record if there is none.
 * Returns the families added (an offer for a family already held is refused: the caller
 * withdraws its claim).
 */
export function addBlocks(
  current: NodeRecord | undefined,
  name: string,
  uid: string,
  offer: Readonly<Partial<Record<Family, BlockRef>>>,
  now: number,
): { record: NodeRecord; added: Family[] } {
  const record: NodeRecord = current
    ? { ...current, blocks: { ...current.blocks } }
    : { v: 1, name, uid, blocks: {}, createdAt: now };
  const added: Family[] = [];
  for (const f of ['IPv4', 'IPv6'] as const) {
    const b = offer[f];
    if (b === undefined || record.blocks[f] !== undefined) continue;
    record.blocks[f] = { cidr: b.cidr, gateway: b.gateway };
    added.push(f);
  }
  return { record, added };
}

/** The pod's addresses in the cluster's family order, as replies and events carry them. */
export function orderedAddresses(
  ips: SlotRecord['ips'],
  families: readonly Family[],
): { family: Family; address: string }[] {
  const out: { family: Family; address: string }[] = [];
  const order = [...families, ...(['IPv4', 'IPv6'] as const).filter((f) => !families.includes(f))];
  for (const f of order) {
    const ip = ips[f];
    if (ip !== undefined) out.push({ family: f, address: ip });
  }
  return out;
}
