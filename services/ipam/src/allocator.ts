import { randomUUID } from 'node:crypto';
import type { Family, IpamOwnerRecordValue } from '@dyad/contracts';
import { IpamErrorCode, IpamKey } from '@dyad/contracts';
import { StoreError } from './errors.ts';
import type { NodeBlocks, SlotRecord } from './record.ts';
import { slotCapacity, slotIps } from './record.ts';
import type { IpamStore, WriteOutcome } from './store.ts';
import { containerIdOfOwnerKey, ownerFilter } from './store.ts';
import type { IpamTable } from './table.ts';

/**
 * The allocation protocol. Two kinds of keys decide everything, each written only if it still is
 * what the writer read:
 * - `slot.<node>.<n>`: exactly one sandbox holds slot n (its addresses) of a node;
 * - `owner.<node>.<containerId>`: which slot that sandbox holds.
 * A request first claims a free slot, then points the owner record at it. So an owner record only
 * ever names a slot its sandbox held when it was written, and nothing moves an owner away from a
 * slot the sandbox still holds: the first owner write of a sandbox decides, and every other
 * attempt for it (a retry racing the original on another replica, a repeat after a lost reply)
 * reads that owner, finds its slot holding the sandbox, gives up its own claim and answers with
 * that slot. An owner whose slot no longer holds the sandbox (freed by a release or GC) is pointed
 * at the new claim by a revision-checked write. A claim left behind by a replica that died before
 * its owner write is an orphan that GC removes after its grace period.
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
 * ends once its owner write settles, within a couple of KV timeouts (5 s each) even when the
 * store is away, so this only bounds a claim that was lost track of. */
const CLAIM_WAIT_MS = 10_000;
/** How long, and how often, a replica tries to tidy up after a write whose ack it did not get
 * (see `tidy`); what is left after that is GC's. */
const TIDY_FOR_MS = 10 * 60_000;
const TIDY_STEP_MS = 1_000;

interface Claim {
  readonly slot: number;
  readonly rev: number;
  readonly value: SlotRecord;
}

/**
 * A write whose ack did not come: it may have happened, or may yet (a late write). `tidy` learns
 * which and undoes what nothing uses, first fencing the write off so it cannot land later.
 */
type UnackedWrite =
  | {
      readonly kind: 'claim';
      readonly node: string;
      readonly slot: number;
      readonly expected: number;
      readonly value: SlotRecord;
    }
  | {
      readonly kind: 'owner';
      readonly node: string;
      readonly claim: Claim;
      readonly expected: number;
      readonly podUid: string;
    }
  | { readonly kind: 'drop'; readonly node: string; readonly claim: Claim };

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
    let claim: Claim;
    try {
      claim = await this.claimNew(req, capacity);
    } catch (err) {
      // No free slot: a repeat of an allocation the sandbox already has still gets it.
      if (!(err instanceof AllocationError)) throw err;
      const held = await this.existing(req);
      if (held === undefined) throw err;
      return held;
    }
    try {
      return await this.pointOwner(req, claim);
    } finally {
      this.table.settle(req.node, claim.slot);
    }
  }

  /**
   * Points the sandbox's owner record at `claim`, or answers with the slot an earlier write of
   * the owner names if the sandbox still holds it (giving `claim` up). See the class comment.
   */
  private async pointOwner(req: AllocateInput, claim: Claim): Promise<AllocateOutcome> {
    const ownerKey = IpamKey.owner(req.node, req.containerId);
    const owner: IpamOwnerRecordValue = {
      slot: claim.slot,
      podUid: req.podUid,
      at: claim.value.at,
    };
    let mine: Claim | undefined = claim;
    try {
      let expected = 0;
      for (let round = 0; round < MAX_ROUNDS; round++) {
        let w: WriteOutcome;
        try {
          w = await this.store.writeIf(ownerKey, owner, expected);
        } catch (err) {
          // It may have happened, and another attempt may already have answered with it: the
          // claim is tidy's to keep or give back now.
          mine = undefined;
          await this.tidyAfter({
            kind: 'owner',
            node: req.node,
            claim,
            expected,
            podUid: req.podUid,
          });
          throw err;
        }
        if (w !== 'conflict') {
          mine = undefined;
          return { node: req.node, slot: claim.slot, record: claim.value, created: true };
        }
        this.onConflict('owner');
        const ow = await this.store.owner(req.node, req.containerId);
        expected = ow.revision;
        // No allocation, or a released one: ours becomes it.
        if (!ow.present || ow.value.released !== undefined) continue;
        const held = await this.heldByOwner(req, ow.value);
        if (held !== undefined) return held;
        // The owner names a slot the sandbox no longer holds: point it at ours.
      }
      throw new StoreError(
        `container ${req.containerId} on node ${req.node}: the allocation did not settle in ${MAX_ROUNDS} rounds`,
      );
    } finally {
      if (mine !== undefined) await this.drop(req.node, mine);
    }
  }

  /** The allocation the sandbox holds now, if any (read from the store). */
  private async existing(req: AllocateInput): Promise<AllocateOutcome | undefined> {
    const ow = await this.store.owner(req.node, req.containerId);
    if (!ow.present || ow.value.released !== undefined) return undefined;
    return this.heldByOwner(req, ow.value);
  }

  /** The owner's slot if it holds the sandbox; refuses a container id another pod holds. */
  private async heldByOwner(
    req: AllocateInput,
    o: IpamOwnerRecordValue,
  ): Promise<AllocateOutcome | undefined> {
    if (o.podUid !== req.podUid) {
      throw new AllocationError(
        IpamErrorCode.ownerMismatch,
        `container ${req.containerId} holds addresses on node ${req.node} for pod UID ${o.podUid}, not ${req.podUid}`,
      );
    }
    const sl = await this.store.slot(req.node, o.slot);
    if (!sl.present || sl.value.containerId !== req.containerId) return undefined;
    return {
      node: req.node,
      slot: o.slot,
      record: await this.withFamilies(req, o.slot, sl.value, sl.revision),
      created: false,
    };
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
      claim: randomUUID(),
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

  /**
   * Claims slot n if its last revision is `expected`; undefined if someone else holds it. A claim
   * made stays in flight in the table (it may yet be given up) until the caller settles it.
   */
  private async claimAt(
    node: string,
    slot: number,
    value: SlotRecord,
    expected: number,
  ): Promise<Claim | undefined> {
    let made = false;
    const write = (rev: number): Promise<WriteOutcome> =>
      this.store.writeIf(IpamKey.slot(node, slot), value, rev).catch(async (err: unknown) => {
        await this.tidyAfter({ kind: 'claim', node, slot, expected: rev, value });
        throw err;
      });
    try {
      let w: WriteOutcome = expected < 0 ? 'conflict' : await write(expected);
      if (w === 'conflict') {
        this.onConflict('slot');
        // The hint was stale. A slot released since (a newer delete marker) is still free.
        const cur = await this.store.slot(node, slot);
        if (cur.present) {
          this.table.noteTaken(node, slot);
          this.table.noteSlot(node, slot, cur.revision, true);
          return undefined;
        }
        w = await write(cur.revision);
        if (w === 'conflict') {
          this.table.noteTaken(node, slot);
          return undefined;
        }
      }
      this.table.noteSlot(node, slot, w, true);
      made = true;
      return { slot, rev: w, value };
    } finally {
      if (!made) this.table.settle(node, slot);
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

  /**
   * Gives a claim back: tidy's revision-checked delete, tried again in the background while the
   * store does not answer.
   */
  private drop(node: string, c: Claim): Promise<void> {
    return this.tidyAfter({ kind: 'drop', node, claim: c });
  }

  /**
   * Tidies after an unacknowledged write once now and, while the store does not answer, again in
   * the background every TIDY_STEP_MS for up to TIDY_FOR_MS (then it is GC's).
   */
  private async tidyAfter(u: UnackedWrite): Promise<void> {
    const once = (): Promise<boolean> =>
      this.tidy(u).then(
        () => true,
        (err: unknown) => {
          if (err instanceof StoreError) return false;
          throw err;
        },
      );
    if (await once()) return;
    const until = Date.now() + TIDY_FOR_MS;
    const again = (): void => {
      const t = setTimeout(() => {
        void once().then((done) => {
          if (!done && Date.now() < until) again();
        });
      }, TIDY_STEP_MS);
      t.unref();
    };
    again();
  }

  /** One pass of tidying; throws StoreError while the store does not answer. */
  private async tidy(u: UnackedWrite): Promise<void> {
    const slotKey = (n: number): string => IpamKey.slot(u.node, n);
    switch (u.kind) {
      case 'drop':
        // Revision-checked: once anything else was written there, it no longer applies.
        if (await this.store.deleteIf(slotKey(u.claim.slot), u.claim.rev)) {
          this.table.noteSlot(u.node, u.claim.slot, -1, false);
        }
        return;
      case 'claim': {
        const cur = await this.store.slot(u.node, u.slot);
        if (cur.present && cur.value.claim === u.value.claim) {
          // It happened, and no owner names it (the attempt stopped before its owner write).
          return this.tidy({
            kind: 'drop',
            node: u.node,
            claim: { slot: u.slot, rev: cur.revision, value: u.value },
          });
        }
        // Not yet: a delete marker at the revision it expects fences it off for good.
        if (cur.revision === u.expected) await this.store.deleteIf(slotKey(u.slot), u.expected);
        return;
      }
      case 'owner': {
        const containerId = u.claim.value.containerId;
        for (let round = 0; round < MAX_ROUNDS; round++) {
          const ow = await this.store.owner(u.node, containerId);
          if (ow.present && ow.value.released === undefined && ow.value.slot === u.claim.slot) {
            return; // it happened: the claim is the sandbox's allocation
          }
          if (ow.revision === u.expected) {
            // Not yet: a released owner record at the revision it expects fences it off.
            const fence: IpamOwnerRecordValue = {
              slot: u.claim.slot,
              podUid: u.podUid,
              at: u.claim.value.at,
              released: this.now(),
            };
            const w = await this.store.writeIf(
              IpamKey.owner(u.node, containerId),
              fence,
              u.expected,
            );
            if (w === 'conflict') continue; // written meanwhile (perhaps by the late write): look again
          }
          return this.tidy({ kind: 'drop', node: u.node, claim: u.claim });
        }
        throw new StoreError(
          `container ${containerId} on node ${u.node}: the owner did not settle`,
        );
      }
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
