import type { Family, IpamOwnerRecordValue } from '@dyad/contracts';
import { IpamErrorCode, IpamKey } from '@dyad/contracts';
import { StoreError } from './errors.ts';
import type { NodeBlocks, SlotRecord } from './record.ts';
import { slotCapacity, slotIps } from './record.ts';
import type { Current, IpamStore, WriteOutcome } from './store.ts';
import { containerIdOfOwnerKey, ownerFilter } from './store.ts';
import type { IpamTable } from './table.ts';

/**
 * The allocation protocol. Two kinds of keys decide everything, each written only if it still is
 * what the writer read:
 * - `slot.<node>.<n>`: exactly one sandbox holds slot n (its addresses) of a node;
 * - `owner.<node>.<containerId>`: which slot that sandbox holds.
 * A slot is the sandbox's only if its owner record points to it. A new allocation writes the owner
 * record, then claims the slot it names; when either write loses, `settle` reads the owner again
 * and makes the two agree, so a retried or duplicated request, or a replica that died between
 * the two writes, ends with one slot per sandbox. A slot left holding a sandbox whose owner points elsewhere is an orphan that
 * GC removes once older than its grace period.
 */
export interface AllocateInput {
  readonly node: string;
  readonly namespace: string;
  readonly pod: string;
  readonly podUid: string;
  readonly containerId: string;
  readonly families: readonly Family[];
  readonly blocks: NodeBlocks;
}

export interface Held {
  readonly node: string;
  readonly slot: number;
  readonly record: SlotRecord;
}

export type AllocateOutcome = Held & { readonly created: boolean };

/** A refusal with the error code the reply carries. */
export class AllocationError extends Error {
  override name = 'AllocationError';
  readonly code: string;
  readonly family: Family | undefined;
  constructor(code: string, message: string, family?: Family) {
    super(message);
    this.code = code;
    this.family = family;
  }
}

export type ReleaseOutcome =
  | { readonly kind: 'released'; readonly held: readonly Held[] }
  | { readonly kind: 'already' }
  | { readonly kind: 'not-allocated' };

const MAX_ROUNDS = 16;
/** Longest wait for one of this replica's claims to end before deciding a node is full; a claim
 * ends within the KV write timeout (5 s), so this only bounds a claim that was lost track of. */
const CLAIM_WAIT_MS = 10_000;

interface Claim {
  readonly slot: number;
  readonly rev: number;
  readonly value: SlotRecord;
}

export class Allocator {
  private readonly store: IpamStore;
  private readonly table: IpamTable;
  private readonly now: () => number;
  private readonly sync: () => Promise<void>;

  private readonly onConflict: (key: 'slot' | 'owner') => void;

  constructor(
    store: IpamStore,
    table: IpamTable,
    sync: () => Promise<void>,
    now: () => number,
    onConflict: (key: 'slot' | 'owner') => void = () => undefined,
  ) {
    this.store = store;
    this.table = table;
    this.sync = sync;
    this.now = now;
    this.onConflict = onConflict;
  }

  async allocate(req: AllocateInput): Promise<AllocateOutcome> {
    const capacity = slotCapacity(req.blocks);
    const at = this.now();
    const pick = await this.pickOrExhausted(req, capacity);
    const value = this.slotValue(req, pick.slot, at);
    const ownerKey = IpamKey.owner(req.node, req.containerId);
    const owner: IpamOwnerRecordValue = { slot: pick.slot, podUid: req.podUid, at };
    // The owner record first: a repeated request stops here, before claiming anything.
    let o: WriteOutcome;
    try {
      o = await this.store.writeIf(ownerKey, owner, 0);
    } catch (err) {
      this.table.settle(req.node, pick.slot);
      throw err;
    }
    if (o === 'conflict') {
      this.onConflict('owner');
      this.table.settle(req.node, pick.slot);
      return this.settle(req, capacity, undefined, undefined);
    }
    const c = await this.claimAt(req.node, pick.slot, value, pick.expected);
    if (c !== undefined) return { node: req.node, slot: pick.slot, record: value, created: true };
    try {
      return await this.settle(req, capacity, undefined, {
        present: true,
        value: owner,
        revision: o,
      });
    } catch (err) {
      // The node filled up under us: take back the owner record this request wrote.
      if (err instanceof AllocationError) await this.store.purgeIf(ownerKey, o).catch(() => false);
      throw err;
    }
  }

  private async settle(
    req: AllocateInput,
    capacity: number,
    claimedFirst: Claim | undefined,
    ownerFirst: Current<IpamOwnerRecordValue> | undefined,
  ): Promise<AllocateOutcome> {
    // Whether this request made the allocation (its owner record): only then is it announced.
    let mine = ownerFirst !== undefined;
    const out = await this.settleRounds(req, capacity, claimedFirst, ownerFirst, () => {
      mine = true;
    });
    return { ...out, created: mine && out.created };
  }

  /** Makes the owner record and the slots agree after a lost write; see the class comment. */
  private async settleRounds(
    req: AllocateInput,
    capacity: number,
    claimedFirst: Claim | undefined,
    ownerFirst: Current<IpamOwnerRecordValue> | undefined,
    madeOwner: () => void,
  ): Promise<AllocateOutcome> {
    const ownerKey = IpamKey.owner(req.node, req.containerId);
    let claimed = claimedFirst;
    let known = ownerFirst;
    try {
      for (let round = 0; round < MAX_ROUNDS; round++) {
        const ow = known ?? (await this.store.owner(req.node, req.containerId));
        known = undefined;
        if (!ow.present || ow.value.released !== undefined) {
          // No allocation (or a released one): this request makes one.
          claimed ??= await this.claimNew(req, capacity);
          const w = await this.store.writeIf(
            ownerKey,
            { slot: claimed.slot, podUid: req.podUid, at: claimed.value.at },
            ow.revision,
          );
          if (w === 'conflict') continue;
          madeOwner();
          const c = claimed;
          claimed = undefined;
          return { node: req.node, slot: c.slot, record: c.value, created: true };
        }
        const o = ow.value;
        if (o.podUid !== req.podUid) {
          throw new AllocationError(
            IpamErrorCode.ownerMismatch,
            `container ${req.containerId} holds addresses on node ${req.node} for pod UID ${o.podUid}, not ${req.podUid}`,
          );
        }
        if (claimed !== undefined && claimed.slot === o.slot) {
          const c = claimed;
          claimed = undefined;
          return { node: req.node, slot: c.slot, record: c.value, created: true };
        }
        const sl = await this.store.slot(req.node, o.slot);
        if (sl.present && sl.value.containerId === req.containerId) {
          return {
            node: req.node,
            slot: o.slot,
            record: await this.withFamilies(req, o.slot, sl.value, sl.revision),
            created: false,
          };
        }
        if (!sl.present) {
          // The owner points at a free slot: its claim is in flight elsewhere, or its writer
          // died before making it. Either way it is this sandbox's to take.
          const c = await this.claimAt(
            req.node,
            o.slot,
            this.slotValue(req, o.slot, o.at),
            sl.revision,
          );
          if (c !== undefined) {
            return { node: req.node, slot: c.slot, record: c.value, created: true };
          }
          continue;
        }
        // The owner's slot went to another sandbox: point the owner at a slot of its own.
        claimed ??= await this.claimNew(req, capacity);
        const w = await this.store.writeIf(
          ownerKey,
          { slot: claimed.slot, podUid: req.podUid, at: o.at },
          ow.revision,
        );
        if (w === 'conflict') continue;
        const c = claimed;
        claimed = undefined;
        return { node: req.node, slot: c.slot, record: c.value, created: true };
      }
      throw new StoreError(
        `container ${req.containerId} on node ${req.node}: the allocation did not settle in ${MAX_ROUNDS} rounds`,
      );
    } finally {
      if (claimed !== undefined) await this.drop(req.node, claimed);
    }
  }

  /** A repeated request may ask for a family the first did not (or that was enabled since). */
  private async withFamilies(
    req: AllocateInput,
    slot: number,
    record: SlotRecord,
    rev: number,
  ): Promise<SlotRecord> {
    // Only where the slot exists in that family's block: a block with fewer pod addresses than
    // the one the slot was taken from cannot give this sandbox an address.
    const missing = req.families.filter((f) => {
      const b = req.blocks[f];
      return record.ips[f] === undefined && b !== undefined && slot < slotCapacity({ [f]: b });
    });
    if (missing.length === 0) return record;
    const next: SlotRecord = {
      ...record,
      ips: { ...record.ips, ...slotIps(req.blocks, slot, missing) },
    };
    const w = await this.store.writeIf(IpamKey.slot(req.node, slot), next, rev);
    if (w === 'conflict') {
      throw new StoreError(`slot ${slot} of node ${req.node} changed while adding a family; retry`);
    }
    this.table.noteSlot(req.node, slot, w, true);
    return next;
  }

  private slotValue(req: AllocateInput, slot: number, at: number): SlotRecord {
    return {
      containerId: req.containerId,
      namespace: req.namespace,
      pod: req.pod,
      podUid: req.podUid,
      ips: slotIps(req.blocks, slot, req.families),
      at,
    };
  }

  private async pickOrExhausted(
    req: { readonly node: string; readonly blocks: NodeBlocks },
    capacity: number,
  ): Promise<{ slot: number; expected: number }> {
    // Full as far as this replica knows. Its own claims in flight count as taken, yet one may
    // lose to another replica's claim of the same slot (not seen here yet) or be abandoned when
    // the sandbox turns out to hold a slot already: wait for them to end and look again. Then
    // catch up with the watch before saying the node is full.
    let synced = false;
    let waiting = true;
    for (;;) {
      const p = this.table.pick(req.node, capacity);
      if (p !== undefined) return p;
      if (waiting && this.table.claiming(req.node) > 0) {
        waiting = await this.table.claimEnded(req.node, CLAIM_WAIT_MS);
        if (waiting) continue;
      }
      if (synced) break;
      await this.sync();
      synced = true;
    }
    const limiting = limitingFamily(req.blocks);
    const b = limiting === undefined ? undefined : req.blocks[limiting];
    throw new AllocationError(
      IpamErrorCode.exhausted,
      `node ${req.node} has no free pod address: its ${limiting ?? ''} block ${b?.cidr ?? ''} is full (${capacity} pods)`,
      limiting,
    );
  }

  /** Claims slot n if its last revision is `expected`; undefined if someone else holds it. */
  private async claimAt(
    node: string,
    slot: number,
    value: SlotRecord,
    expected: number,
  ): Promise<Claim | undefined> {
    try {
      let w: WriteOutcome =
        expected < 0
          ? 'conflict'
          : await this.store.writeIf(IpamKey.slot(node, slot), value, expected);
      if (w === 'conflict') {
        this.onConflict('slot');
        // The hint was stale. A slot released since (a newer delete marker) is still free.
        const cur = await this.store.slot(node, slot);
        if (cur.present) {
          this.table.noteTaken(node, slot);
          this.table.noteSlot(node, slot, cur.revision, true);
          return undefined;
        }
        w = await this.store.writeIf(IpamKey.slot(node, slot), value, cur.revision);
        if (w === 'conflict') {
          this.table.noteTaken(node, slot);
          return undefined;
        }
      }
      this.table.noteSlot(node, slot, w, true);
      return { slot, rev: w, value };
    } finally {
      this.table.settle(node, slot);
    }
  }

  private async claimNew(req: AllocateInput, capacity: number): Promise<Claim> {
    for (let i = 0; i < MAX_ROUNDS * 4; i++) {
      const p = await this.pickOrExhausted(req, capacity);
      const c = await this.claimAt(
        req.node,
        p.slot,
        this.slotValue(req, p.slot, this.now()),
        p.expected,
      );
      if (c !== undefined) return c;
    }
    throw new StoreError(`node ${req.node}: every slot tried was taken by another replica first`);
  }

  private async drop(node: string, c: Claim): Promise<void> {
    if (await this.store.deleteIf(IpamKey.slot(node, c.slot), c.rev)) {
      this.table.noteSlot(node, c.slot, -1, false);
    }
  }

  // ---- release ----

  /** Releases what a sandbox holds: the slot first, then the owner is marked released. */
  async releaseContainer(node: string, containerId: string): Promise<ReleaseOutcome> {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const ow = await this.store.owner(node, containerId);
      if (!ow.present) return { kind: 'not-allocated' };
      if (ow.value.released !== undefined) return { kind: 'already' };
      const o = ow.value;
      const sl = await this.store.slot(node, o.slot);
      let held: Held[] = [];
      if (sl.present && sl.value.containerId === containerId) {
        if (!(await this.store.deleteIf(IpamKey.slot(node, o.slot), sl.revision))) continue;
        this.table.noteSlot(node, o.slot, -1, false);
        held = [{ node, slot: o.slot, record: sl.value }];
      }
      const w = await this.store.writeIf(
        IpamKey.owner(node, containerId),
        { ...o, released: this.now() },
        ow.revision,
      );
      if (w === 'conflict' && held.length === 0) continue;
      return { kind: 'released', held };
    }
    throw new StoreError(`container ${containerId} on node ${node}: the release did not settle`);
  }

  /** Releases every sandbox of a pod on a node; reads the node's owner records to find them. */
  async releasePod(node: string, podUid: string): Promise<ReleaseOutcome> {
    const keys = await this.store.keys(ownerFilter(node));
    const held: Held[] = [];
    let seen = false;
    let already = false;
    for (const key of keys) {
      const cid = containerIdOfOwnerKey(node, key);
      const ow = await this.store.owner(node, cid);
      if (!ow.present || ow.value.podUid !== podUid) continue;
      seen = true;
      const r = await this.releaseContainer(node, cid);
      if (r.kind === 'released') held.push(...r.held);
      if (r.kind === 'already') already = true;
    }
    if (!seen) return { kind: 'not-allocated' };
    if (held.length === 0 && already) return { kind: 'already' };
    return { kind: 'released', held };
  }

  /**
   * GC: frees a slot whose pod is gone, if it is still the claim GC saw (same revision). The
   * owner is marked released when it points to that slot.
   */
  async releaseGone(node: string, slot: number, rev: number, record: SlotRecord): Promise<boolean> {
    if (!(await this.store.deleteIf(IpamKey.slot(node, slot), rev))) return false;
    this.table.noteSlot(node, slot, -1, false);
    const ow = await this.store.owner(node, record.containerId);
    if (ow.present && ow.value.released === undefined && ow.value.slot === slot) {
      await this.store.writeIf(
        IpamKey.owner(node, record.containerId),
        { ...ow.value, released: this.now() },
        ow.revision,
      );
    }
    return true;
  }
}

/** The family whose block has the fewest usable addresses: the one that bounds a node's slots. */
export function limitingFamily(blocks: NodeBlocks): Family | undefined {
  let best: Family | undefined;
  let bestCap = Number.POSITIVE_INFINITY;
  for (const f of ['IPv4', 'IPv6'] as const) {
    const b = blocks[f];
    if (b === undefined) continue;
    const cap = slotCapacity({ [f]: b });
    if (cap < bestCap) {
      best = f;
      bestCap = cap;
    }
  }
  return best;
}
