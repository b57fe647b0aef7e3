import type { Family } from '@dyad/netaddr';
import type { NodeBlockValue } from '@dyad/contracts';
import { FamilySchema, NodeBlock } from '@dyad/contracts';
import { z } from 'zod';
import { BlocksChangeError, NodeBlocksError, StateError } from '../errors.ts';
import type { NodeBlocks, SlotAddress } from './blocks.ts';
import {
  NO_BLOCKS,
  nodeBlockList,
  parseNodeBlocks,
  slotAddresses,
  slotOfAddress,
} from './blocks.ts';

/**
 * The node's pod addresses, allocated by the agent itself from the block sets ipam gave the node.
 * A pure in-memory state machine: no clock but the one injected, no I/O. The agent persists
 * `toJSON()` durably (GroupCommitFile) and must not answer a CNI call before that write is
 * durable: commit after every call that returned or released addresses, repeats included, because
 * memory may be ahead of the disk (an earlier attempt whose write failed).
 *
 * One holder per container id (the CNI sandbox), one container per slot. A slot is one address
 * per family from one block set (see blocks.ts).
 */

/** The pod a sandbox belongs to (CNI_ARGS K8S_POD_*). */
export interface PodOwner {
  readonly namespace: string;
  readonly name: string;
  readonly uid?: string;
}

export interface Holder {
  readonly containerId: string;
  readonly slot: number;
  readonly pod: PodOwner;
  /** The families it holds an address of, in the cluster's family order. */
  readonly families: readonly Family[];
  readonly allocatedAt: string;
}

export interface AllocateRequest {
  readonly containerId: string;
  readonly pod: PodOwner;
  /** Families wanted; undefined or empty: every family the node's blocks have. */
  readonly families?: readonly Family[];
}

export interface ReserveRequest extends AllocateRequest {
  readonly slot: number;
  /** When the slot was first given (adopting an older record); default now. */
  readonly allocatedAt?: string;
}

export interface Allocation {
  readonly ok: true;
  readonly slot: number;
  /** In the cluster's family order. */
  readonly addresses: readonly SlotAddress[];
  readonly allocatedAt: string;
  /** True when this call took the slot; false for a container that already held it. */
  readonly fresh: boolean;
}

export type AllocationFailure =
  | {
      readonly ok: false;
      /** no-blocks: the node has no set yet; exhausted: every slot is held. */
      readonly reason: 'no-blocks' | 'exhausted' | 'family-disabled';
      readonly message: string;
    }
  | {
      readonly ok: false;
      /** The container id is held for another pod. */
      readonly reason: 'owner-mismatch';
      readonly message: string;
      readonly holder: Holder;
    };

export type ReserveFailure =
  | AllocationFailure
  | { readonly ok: false; readonly reason: 'out-of-range'; readonly message: string }
  | {
      readonly ok: false;
      /**
       * slot-taken: another container holds the slot; container-elsewhere: this container holds
       * another slot. `holder` is the holding record either way.
       */
      readonly reason: 'slot-taken' | 'container-elsewhere';
      readonly message: string;
      readonly holder: Holder;
    };

export interface BlocksChange {
  /** False when the list is the one in use, or older news (`stale`). */
  readonly changed: boolean;
  /** The list's blocks are some of the ones in use: an older event, ignored (see setBlocks). */
  readonly stale: boolean;
  readonly sets: number;
  /** Holders whose slot number changed (their addresses did not): see setBlocks. */
  readonly renumbered: number;
}

const Pod = z.object({
  namespace: z.string().min(1),
  name: z.string().min(1),
  uid: z.string().min(1).optional(),
});

/** What `toJSON` writes and `fromJSON` reads back. */
export const NodeAllocatorState = z.object({
  v: z.literal(1),
  /** The node's blocks, set by set, in the cluster's family order within a set. */
  blocks: z.array(NodeBlock),
  /** The slot the next search starts at. */
  cursor: z.number().int().min(0),
  /** Sorted by slot. */
  holders: z.array(
    z.object({
      containerId: z.string().min(1),
      slot: z.number().int().min(0),
      pod: Pod,
      families: z.array(FamilySchema).min(1),
      allocatedAt: z.string(),
    }),
  ),
});
export type NodeAllocatorStateValue = z.output<typeof NodeAllocatorState>;

export interface NodeAllocatorOptions {
  readonly now?: () => Date;
}

/** Same pod: namespace and name always, the UID when both sides know it. */
function samePod(a: PodOwner, b: PodOwner): boolean {
  if (a.namespace !== b.namespace || a.name !== b.name) return false;
  return a.uid === undefined || b.uid === undefined || a.uid === b.uid;
}

function podText(p: PodOwner): string {
  return `${p.namespace}/${p.name}${p.uid === undefined ? '' : ` (uid ${p.uid})`}`;
}

/** The wanted families in cluster order; undefined or empty means all of the node's. */
function wantedFamilies(
  nb: NodeBlocks,
  asked: readonly Family[] | undefined,
): Family[] | { missing: Family[] } {
  if (asked === undefined || asked.length === 0) return [...nb.families];
  const missing = asked.filter((f) => !nb.families.includes(f));
  if (missing.length > 0) return { missing: [...new Set(missing)] };
  return nb.families.filter((f) => asked.includes(f));
}

/**
 * The first slot at or after `start` that `isTaken` says is free, wrapping at `capacity`;
 * undefined when all are taken. At most `takenCount` + 1 probes, so a huge set (an IPv6-only
 * node with /64 blocks) is searched as fast as a small one.
 */
export function nextFreeSlot(
  isTaken: (slot: number) => boolean,
  takenCount: number,
  capacity: number,
  start: number,
): number | undefined {
  if (takenCount >= capacity) return undefined;
  let slot = start >= 0 && start < capacity ? start : 0;
  for (let probes = Math.min(takenCount + 1, capacity); probes > 0; probes--) {
    if (!isTaken(slot)) return slot;
    slot = slot + 1 === capacity ? 0 : slot + 1;
  }
  return undefined;
}

export class NodeAllocator {
  #blocks: NodeBlocks = NO_BLOCKS;
  readonly #byContainer = new Map<string, Holder>();
  readonly #bySlot = new Map<number, string>();
  /**
   * Where the next search starts: just after the last slot allocate gave, so a released address
   * is handed out again only after every other free one (peers and conntrack entries that still
   * know the old pod's address have time to forget it). May equal the capacity.
   */
  #cursor = 0;
  /**
   * The number of sets the node had when the agent last asked ipam for another (undefined: no ask
   * outstanding). Kept in memory only: after a restart the agent simply asks again, and ipam adds
   * a set only to a node with no more sets than the request says, so a repeat never adds two.
   */
  #growAskedAt: number | undefined;
  readonly #now: () => Date;

  constructor(options: NodeAllocatorOptions = {}) {
    this.#now = options.now ?? (() => new Date());
  }

  /** The node's blocks in use. */
  blocks(): NodeBlocks {
    return this.#blocks;
  }

  /**
   * Takes the node's block list (IpamNodeEvent, GrowReply). ipam only appends sets, and adds a
   * newly enabled family to every set at once; any list is taken as long as every holder keeps
   * exactly its addresses. A list that drops or alters a block an allocation uses is refused with
   * BlocksChangeError, and a malformed one with NodeBlocksError; either way nothing changes. Sets
   * nobody holds an address in may change: a node ipam forgot and recreated while the agent held
   * nothing gets its new blocks. A list made only of blocks in use, fewer of them, is older news
   * (a node event delivered after the grow reply that added a set): ipam never takes a block from
   * a node, so it is ignored (`stale`) rather than taken, which would drop a set the agent reports
   * as held and ipam could give to another node.
   *
   * Slot numbers are an index, not an identity: a change of an earlier set's capacity (IPv4 /24s,
   * 253 pods, joining IPv6 /120s, 254) moves the numbers of later slots, so a holder whose
   * addresses are the same at another number is renumbered (`renumbered` counts them).
   */
  setBlocks(list: readonly NodeBlockValue[]): BlocksChange {
    const next = parseNodeBlocks(list);
    const conflicts: { containerId: string; slot: number }[] = [];
    const moved = new Map<number, Holder>();
    for (const h of this.#byContainer.values()) {
      const slot = slotInBlocks(next, this.addressesOf(h), h.families);
      const other = slot === undefined ? undefined : moved.get(slot);
      if (slot === undefined) {
        conflicts.push({ containerId: h.containerId, slot: h.slot });
      } else if (other !== undefined) {
        // Holders of one family each, from two sets whose blocks the list pairs differently:
        // both would be one slot. ipam never re-pairs sets; refused all the same.
        conflicts.push({ containerId: other.containerId, slot: other.slot });
        conflicts.push({ containerId: h.containerId, slot: h.slot });
      } else {
        const families = next.families.filter((f) => h.families.includes(f));
        moved.set(slot, { ...h, slot, families });
      }
    }
    if (conflicts.length > 0) {
      const shown = conflicts.slice(0, 5).map((c) => `${c.containerId} at slot ${c.slot}`);
      throw new BlocksChangeError(
        `new blocks would take addresses from ${conflicts.length} holder(s): ${shown.join(', ')}`,
        conflicts,
      );
    }
    const current = nodeBlockList(this.#blocks);
    const listed = nodeBlockList(next);
    if (
      listed.length < current.length &&
      listed.every((b) => current.some((c) => sameBlock(b, c)))
    ) {
      return { changed: false, stale: true, sets: this.#blocks.sets.length, renumbered: 0 };
    }
    const changed = !sameBlockList(current, listed);
    let renumbered = 0;
    for (const h of moved.values()) {
      if (h.slot !== this.#byContainer.get(h.containerId)?.slot) renumbered++;
    }
    this.#blocks = next;
    this.#bySlot.clear();
    for (const h of moved.values()) this.#hold(h);
    if (this.#growAskedAt !== undefined && next.sets.length > this.#growAskedAt) {
      this.#growAskedAt = undefined;
    }
    return { changed, stale: false, sets: next.sets.length, renumbered };
  }

  /**
   * Addresses for a sandbox: the ones it holds already (`fresh: false`, a repeated ADD), else the
   * next free slot. A repeat asking for a family it lacks gets it at its slot (every set has every
   * family). The agent commits the state before answering either way (see the file comment).
   */
  allocate(req: AllocateRequest): Allocation | AllocationFailure {
    const nb = this.#blocks;
    if (nb.sets.length === 0) {
      return { ok: false, reason: 'no-blocks', message: 'the node has no pod CIDR yet' };
    }
    const families = wantedFamilies(nb, req.families);
    if (!Array.isArray(families)) return familyDisabled(nb, families.missing);
    const held = this.#byContainer.get(req.containerId);
    if (held !== undefined) return this.#repeat(held, req.pod, families);
    const slot = nextFreeSlot(
      (s) => this.#bySlot.has(s),
      this.#bySlot.size,
      nb.capacity,
      this.#cursor,
    );
    if (slot === undefined) {
      return {
        ok: false,
        reason: 'exhausted',
        message: `all ${nb.capacity} pod slots of the node's ${nb.sets.length} block set(s) are taken`,
      };
    }
    // Not wrapped here (the search wraps): past the last slot of a full node, the cursor is
    // where a set appended later begins, so the new set is used before a just-released slot.
    this.#cursor = slot + 1;
    return this.#take(req, slot, families, this.#now().toISOString());
  }

  /**
   * Takes a given slot for a container: adopting an allocation made elsewhere (legacy ipam slots)
   * or rebuilding after the state file was lost (the kernel's addresses, through slotOfAddress).
   * A slot another container holds is refused with that holder, as is a container that holds
   * another slot; the cursor does not move.
   */
  reserve(req: ReserveRequest): Allocation | ReserveFailure {
    const nb = this.#blocks;
    if (nb.sets.length === 0) {
      return { ok: false, reason: 'no-blocks', message: 'the node has no pod CIDR yet' };
    }
    if (!Number.isSafeInteger(req.slot) || req.slot < 0 || req.slot >= nb.capacity) {
      return {
        ok: false,
        reason: 'out-of-range',
        message: `slot ${req.slot} is not one of the node's ${nb.capacity}`,
      };
    }
    const families = wantedFamilies(nb, req.families);
    if (!Array.isArray(families)) return familyDisabled(nb, families.missing);
    const held = this.#byContainer.get(req.containerId);
    if (held !== undefined && held.slot !== req.slot && samePod(held.pod, req.pod)) {
      return {
        ok: false,
        reason: 'container-elsewhere',
        message: `container ${req.containerId} holds slot ${held.slot}, not ${req.slot}`,
        holder: held,
      };
    }
    if (held !== undefined) return this.#repeat(held, req.pod, families);
    const other = this.#bySlot.get(req.slot);
    const otherHolder = other === undefined ? undefined : this.#byContainer.get(other);
    if (otherHolder !== undefined) {
      return {
        ok: false,
        reason: 'slot-taken',
        message: `slot ${req.slot} is held by container ${otherHolder.containerId} of ${podText(otherHolder.pod)}`,
        holder: otherHolder,
      };
    }
    return this.#take(req, req.slot, families, req.allocatedAt ?? this.#now().toISOString());
  }

  /** Frees the container's slot. */
  release(containerId: string): 'released' | 'not-allocated' {
    const h = this.#byContainer.get(containerId);
    if (h === undefined) return 'not-allocated';
    this.#byContainer.delete(containerId);
    this.#bySlot.delete(h.slot);
    return 'released';
  }

  holder(containerId: string): Holder | undefined {
    return this.#byContainer.get(containerId);
  }

  holderOfSlot(slot: number): Holder | undefined {
    const id = this.#bySlot.get(slot);
    return id === undefined ? undefined : this.#byContainer.get(id);
  }

  /** Every holder, by slot. */
  holders(): Holder[] {
    return [...this.#byContainer.values()].sort((a, b) => a.slot - b.slot);
  }

  /** The holder's addresses in the blocks in use, in the cluster's family order. */
  addressesOf(h: Holder): SlotAddress[] {
    // Never undefined: setBlocks and fromJSON keep every holder inside the blocks.
    return slotAddresses(this.#blocks, h.slot, h.families) ?? [];
  }

  capacity(): number {
    return this.#blocks.capacity;
  }

  free(): number {
    return this.#blocks.capacity - this.#bySlot.size;
  }

  /**
   * Time to ask ipam for another block set: fewer than `preAllocate` slots free and no ask
   * outstanding. A node without any set waits for ipam's first assignment instead (a GrowRequest
   * counts sets the node has, at least one).
   */
  needsGrow(preAllocate: number): boolean {
    return (
      this.#blocks.sets.length > 0 && this.free() < preAllocate && this.#growAskedAt === undefined
    );
  }

  /**
   * Records that the agent is asking for another set; returns the `sets` of the GrowRequest. The
   * ask ends when setBlocks brings more sets than that, or with growAbandoned (the request failed,
   * or ipam answered without a new set: its pool is exhausted) so that needsGrow may ask again.
   */
  growRequested(): number {
    this.#growAskedAt = this.#blocks.sets.length;
    return this.#growAskedAt;
  }

  growAbandoned(): void {
    this.#growAskedAt = undefined;
  }

  growPending(): boolean {
    return this.#growAskedAt !== undefined;
  }

  toJSON(): NodeAllocatorStateValue {
    return {
      v: 1,
      blocks: nodeBlockList(this.#blocks),
      cursor: this.#cursor,
      holders: this.holders().map((h) => ({
        containerId: h.containerId,
        slot: h.slot,
        pod: { ...h.pod },
        families: [...h.families],
        allocatedAt: h.allocatedAt,
      })),
    };
  }

  /**
   * The allocator `toJSON` described. Throws StateError when the value is not such a state: not
   * the schema, blocks ipam could not have sent, a holder outside them, a slot or container twice.
   */
  static fromJSON(value: unknown, options: NodeAllocatorOptions = {}): NodeAllocator {
    const parsed = NodeAllocatorState.safeParse(value);
    if (!parsed.success) {
      const why = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
      throw new StateError(`allocator state: ${why.join('; ')}`);
    }
    const a = new NodeAllocator(options);
    try {
      a.#blocks = parseNodeBlocks(parsed.data.blocks);
    } catch (e) {
      if (e instanceof NodeBlocksError) throw new StateError(`allocator state: ${e.message}`);
      throw e;
    }
    a.#cursor = parsed.data.cursor;
    for (const h of parsed.data.holders) {
      const problem = a.#restoreProblem(h);
      if (problem !== undefined) throw new StateError(`allocator state: ${problem}`);
      a.#hold({ ...h, families: a.#blocks.families.filter((f) => h.families.includes(f)) });
    }
    return a;
  }

  #restoreProblem(h: NodeAllocatorStateValue['holders'][number]): string | undefined {
    if (this.#byContainer.has(h.containerId)) return `container ${h.containerId} twice`;
    if (this.#bySlot.has(h.slot)) return `slot ${h.slot} held twice`;
    if (slotAddresses(this.#blocks, h.slot, h.families) === undefined) {
      return `container ${h.containerId}: slot ${h.slot} (${h.families.join(', ')}) is outside the blocks`;
    }
    return undefined;
  }

  /** A container that holds a slot already: same pod, same slot, maybe more families. */
  #repeat(
    held: Holder,
    pod: PodOwner,
    families: readonly Family[],
  ): Allocation | AllocationFailure {
    if (!samePod(held.pod, pod)) {
      return {
        ok: false,
        reason: 'owner-mismatch',
        message: `container ${held.containerId} holds slot ${held.slot} for ${podText(held.pod)}, not ${podText(pod)}`,
        holder: held,
      };
    }
    let h = held;
    if (families.some((f) => !held.families.includes(f))) {
      h = {
        ...held,
        families: this.#blocks.families.filter(
          (f) => held.families.includes(f) || families.includes(f),
        ),
      };
      this.#hold(h);
    }
    return {
      ok: true,
      slot: h.slot,
      addresses: this.addressesOf(h),
      allocatedAt: h.allocatedAt,
      fresh: false,
    };
  }

  #take(
    req: AllocateRequest,
    slot: number,
    families: readonly Family[],
    allocatedAt: string,
  ): Allocation {
    const pod: PodOwner =
      req.pod.uid === undefined
        ? { namespace: req.pod.namespace, name: req.pod.name }
        : { namespace: req.pod.namespace, name: req.pod.name, uid: req.pod.uid };
    const h: Holder = { containerId: req.containerId, slot, pod, families, allocatedAt };
    this.#hold(h);
    return { ok: true, slot, addresses: this.addressesOf(h), allocatedAt, fresh: true };
  }

  #hold(h: Holder): void {
    this.#byContainer.set(h.containerId, h);
    this.#bySlot.set(h.slot, h.containerId);
  }
}

function familyDisabled(nb: NodeBlocks, missing: readonly Family[]): AllocationFailure {
  return {
    ok: false,
    reason: 'family-disabled',
    message: `the node's blocks have no ${missing.join(', ')} (they have ${nb.families.join(', ')})`,
  };
}

/**
 * The slot of `blocks` whose addresses for `families` are exactly `addresses` (any order), or
 * undefined when there is none: the address of one family names the slot, the rest must agree.
 */
function slotInBlocks(
  blocks: NodeBlocks,
  addresses: readonly SlotAddress[],
  families: readonly Family[],
): number | undefined {
  const first = addresses[0];
  if (first === undefined) return undefined;
  const slot = slotOfAddress(blocks, first.address);
  if (slot === undefined) return undefined;
  return sameAddresses(addresses, slotAddresses(blocks, slot, families)) ? slot : undefined;
}

/** Same address, block and gateway per family; the order may differ (a new primary family). */
function sameAddresses(
  a: readonly SlotAddress[] | undefined,
  b: readonly SlotAddress[] | undefined,
): boolean {
  if (a === undefined || b === undefined || a.length !== b.length) return false;
  return a.every((x) => {
    const y = b.find((c) => c.family === x.family);
    return (
      y !== undefined && x.address === y.address && x.cidr === y.cidr && x.gateway === y.gateway
    );
  });
}

/** Blocks in canonical text (nodeBlockList): equal text is the same block. */
function sameBlock(a: NodeBlockValue, b: NodeBlockValue): boolean {
  return a.family === b.family && a.cidr === b.cidr && a.gateway === b.gateway;
}

function sameBlockList(a: readonly NodeBlockValue[], b: readonly NodeBlockValue[]): boolean {
  return a.length === b.length && a.every((x, i) => b[i] !== undefined && sameBlock(x, b[i]));
}
