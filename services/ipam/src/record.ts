import { FAMILIES } from '@dyad/netaddr';
import type { Family } from '@dyad/netaddr';
import type { IpamNodeRecordValue, NodeBlockValue } from '@dyad/contracts';
import { formatAddress, formatCidr, tryCidrValue } from './addr.ts';

/**
 * Node records and block sets, pure. A node holds block sets: set 0 when kube-bridge announces
 * it, one more each time its agent asks (grow). A set has one block per enabled family. Outside
 * ipam (IpamNodeEvent, GrowReply, NodeBlocksHeld) the sets travel as one flat list: set by set,
 * in the cluster's family order within a set, so the k-th block of each family belongs to set k.
 */
export type NodeRecord = IpamNodeRecordValue;
export type BlockSet = NodeRecord['sets'][number];
export type BlockRef = { readonly cidr: string; readonly gateway: string };

/** The cluster's families first (primary first), then any other, so every block is listed. */
function familyOrder(families: readonly Family[]): Family[] {
  return [...families, ...FAMILIES.filter((f) => !families.includes(f))];
}

export function setCount(record: NodeRecord | undefined): number {
  return record?.sets.length ?? 0;
}

/** One place a node lacks a block: set `set`, family `family`. */
export interface BlockSlot {
  readonly set: number;
  readonly family: Family;
}

/**
 * What a node lacks to hold `target` complete sets of `families`: for each set up to the target,
 * each family it has no block of (a family enabled after the node got its sets lacks in all).
 */
export function missingBlocks(
  record: NodeRecord | undefined,
  target: number,
  families: readonly Family[],
): BlockSlot[] {
  const out: BlockSlot[] = [];
  for (let set = 0; set < target; set++) {
    const have = record?.sets[set];
    for (const family of families) if (have?.[family] === undefined) out.push({ set, family });
  }
  return out;
}

/**
 * The record with the blocks placed in their slots (the record made when there is none). A slot
 * already filled keeps its block: the caller only places what `missingBlocks` named.
 */
export function placeBlocks(
  current: NodeRecord | undefined,
  name: string,
  uid: string,
  placed: readonly (BlockSlot & { readonly block: BlockRef })[],
  now: number,
): NodeRecord {
  const sets: BlockSet[] = (current?.sets ?? []).map((s) => ({ ...s }));
  for (const p of placed) {
    while (sets.length <= p.set) sets.push({});
    const set = sets[p.set] as BlockSet;
    if (set[p.family] === undefined) {
      set[p.family] = { cidr: p.block.cidr, gateway: p.block.gateway };
    }
  }
  return current === undefined ? { v: 2, name, uid, sets, createdAt: now } : { ...current, sets };
}

/** The node's blocks as IpamNodeEvent and GrowReply carry them: set by set, family order. */
export function blockList(record: NodeRecord, families: readonly Family[]): NodeBlockValue[] {
  const order = familyOrder(families);
  return record.sets.flatMap((set) =>
    order.flatMap((family) => {
      const b = set[family];
      return b === undefined ? [] : [{ family, cidr: b.cidr, gateway: b.gateway }];
    }),
  );
}

/** Every block of the record with its family. */
export function recordBlocks(record: NodeRecord): { family: Family; cidr: string }[] {
  return record.sets.flatMap((set) =>
    FAMILIES.flatMap((family) => {
      const b = set[family];
      return b === undefined ? [] : [{ family, cidr: b.cidr }];
    }),
  );
}

/** Whether the record holds this block (CIDR text as ipam writes it: canonical). */
export function holdsBlock(record: NodeRecord | undefined, family: Family, cidr: string): boolean {
  return record?.sets.some((s) => s[family]?.cidr === cidr) ?? false;
}

/** A CIDR and its gateway in the text ipam writes (RFC 5952, host bits clear); undefined if invalid. */
export function canonicalBlock(family: Family, cidr: string): BlockRef | undefined {
  const c = tryCidrValue(cidr);
  if (c?.family !== family) return undefined;
  return { cidr: formatCidr(c), gateway: formatAddress(family, c.base + 1n) };
}

/**
 * Block sets from a flat list (a node agent's NodeBlocksHeld report): the k-th block of each
 * family forms set k, as the list's order says. Blocks that do not parse are left out.
 */
export function setsFromBlocks(blocks: readonly NodeBlockValue[]): BlockSet[] {
  const sets: BlockSet[] = [];
  const seen: Record<Family, number> = { IPv4: 0, IPv6: 0 };
  for (const b of blocks) {
    const ref = canonicalBlock(b.family, b.cidr);
    if (ref === undefined) continue;
    const k = seen[b.family]++;
    while (sets.length <= k) sets.push({});
    (sets[k] as BlockSet)[b.family] = ref;
  }
  return sets;
}

/** Two records hold the same sets, in the same order. */
export function sameSets(a: NodeRecord, b: NodeRecord): boolean {
  return JSON.stringify(blockList(a, FAMILIES)) === JSON.stringify(blockList(b, FAMILIES));
}
