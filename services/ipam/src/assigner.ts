import type { Family } from '@dyad/netaddr';
import type { BusLogger } from '@dyad/bus';
import { IpamErrorCode, IpamKey } from '@dyad/contracts';
import { formatCidr } from './addr.ts';
import type { ClaimedBlock } from './blocks.ts';
import { BlockClaimer } from './blocks.ts';
import type { IpamConfig } from './config.ts';
import { ConfigKey } from './config.ts';
import { StoreError } from './errors.ts';
import type { BlockClaim, MissSince, NodesView } from './gc.ts';
import { planNodeGc, planOrphanBlocks } from './gc.ts';
import type { HeldView } from './held.ts';
import type { IpamMetrics } from './metrics.ts';
import type { BlockSlot, NodeRecord } from './record.ts';
import {
  holdsBlock,
  missingBlocks,
  placeBlocks,
  recordBlocks,
  setCount,
  setsFromBlocks,
} from './record.ts';
import type { Current, IpamStore } from './store.ts';
import { legacyKeyNode, parseBlockKey } from './store.ts';

/**
 * Block assignment: every decision ipam makes, over the bucket only (no bus), so any number of
 * replicas can run it against one bucket at once. Two kinds of conditional writes decide:
 * - `block.<family>.<cidr>` is created once: a block has one owner;
 * - `node.<name>` is written only over the revision read: each write adds whole sets to what the
 *   writer read, so of two replicas racing to add a set for one request one wins and the other
 *   finds the set there, withdraws its claims and answers with it.
 * Within this replica, the work on one node runs one piece at a time (a per-node queue).
 */
export type NodeStatus = 'live' | 'deleted' | 'unknown';

export interface NodeInfo {
  readonly status: NodeStatus;
  /** The Node object's UID ('' when kube-bridge has not shown the node). */
  readonly uid: string;
}

/** A refusal with the error code of the reply (IpamErrorCode). */
export class AssignError extends Error {
  override name = 'AssignError';
  readonly code: IpamErrorCode;
  constructor(code: IpamErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** What the assigner asks of the world beyond the bucket; the service does it over NATS. */
export interface AssignerEffects {
  /** The node's record was written: publish its assignment (IpamNodeEvent). */
  assigned(record: NodeRecord): Promise<void>;
  /** A family's pools had no block for the node (AddressesExhausted). */
  exhausted(node: string, family: Family, message: string): void;
  /** Removes the node's records from DYAD_IPAM_ALLOCATIONS; throws when it could not. */
  purgeAllocations(node: string): Promise<void>;
  /** A deleted node's blocks went back to the pool: publish its tombstone. */
  returned(record: NodeRecord): Promise<void>;
}

export interface AssignerOptions {
  readonly store: IpamStore;
  readonly config: IpamConfig;
  readonly held: HeldView;
  readonly node: (name: string) => NodeInfo;
  readonly effects: AssignerEffects;
  readonly metrics: IpamMetrics;
  readonly logger: BusLogger;
  readonly now: () => number;
  /** A node deleted this long has its blocks returned to the pool. */
  readonly nodeGraceMs: number;
  /** A block claim no record uses is removed after this long. */
  readonly orphanGraceMs: number;
}

export interface GcSummary {
  readonly releasedNodes: number;
  readonly releasedOrphanBlocks: number;
  readonly scannedNodes: number;
}

/** Rounds of read, claim, write before giving up on a node whose record keeps changing. */
const MAX_ROUNDS = 16;
const READ_CONCURRENCY = 16;
/** Legacy watch markers untouched this long belong to replicas that are gone. */
const SYNC_MARKER_STALE_MS = 3600_000;

type Placed = BlockSlot & { readonly claim: ClaimedBlock };

export class Assigner {
  private readonly opts: AssignerOptions;
  private readonly store: IpamStore;
  private readonly families: readonly Family[];
  private readonly claimers = new Map<Family, BlockClaimer>();
  private readonly queues = new Map<string, Promise<void>>();
  private readonly announcing = new Map<string, Promise<NodeRecord | undefined>>();
  private readonly missedNodes: MissSince = new Map();
  /** Legacy keys per node, purged once the node's agent has reported (see IpamKey). */
  private readonly legacy = new Map<string, string[]>();
  /**
   * While true no block is claimed for a new set, only records rebuilt from held reports: after
   * finding the bucket empty, agents that hold blocks may not have reported them yet.
   */
  claimsPaused = false;

  constructor(opts: AssignerOptions) {
    this.opts = opts;
    this.store = opts.store;
    this.families = opts.config.families.map((l) => l.family);
    for (const layout of opts.config.families) {
      this.claimers.set(
        layout.family,
        new BlockClaimer(layout, opts.store, opts.now, () =>
          opts.metrics.conflicts.inc({ key: 'block' }),
        ),
      );
    }
    this.repin();
  }

  /** Learns the claimed blocks (search hints) and the legacy keys; purges stale sync markers. */
  async load(): Promise<void> {
    const claims = await this.store.keys(IpamKey.blockFilter);
    for (const c of this.claimers.values()) c.relearn(claims);
    for (const prefix of [IpamKey.slotPrefix, IpamKey.ownerPrefix]) {
      for (const key of await this.store.keys(`${prefix}>`)) {
        const node = legacyKeyNode(key);
        if (node !== undefined) this.legacy.set(node, [...(this.legacy.get(node) ?? []), key]);
      }
    }
    for (const key of await this.store.keys(IpamKey.syncFilter)) {
      const e = await this.store.getJson(key);
      if (e !== undefined && this.opts.now() - Number(e.value) > SYNC_MARKER_STALE_MS) {
        await this.store.purgeIf(key, e.revision);
      }
    }
  }

  /** Blocks agents report holding are never claimed: call after the held view changes. */
  repin(): void {
    for (const [family, c] of this.claimers) c.pin(this.opts.held.cidrs(family));
  }

  /** Claimed and free blocks per family, as this replica knows them (for the pool gauge). */
  *poolUsage(): Generator<{ family: Family; claimed: number; free: number }> {
    for (const [family, c] of this.claimers) {
      yield { family, claimed: c.claimedCount, free: Number(c.total) - c.claimedCount };
    }
  }

  // ---- assignment ----

  /**
   * Set 0 for a node kube-bridge announced, and a block of each family enabled since in every set
   * it holds. Idempotent (node events repeat with every status change): a complete node costs one
   * read. Concurrent calls for one node share one attempt.
   */
  announce(name: string): Promise<NodeRecord | undefined> {
    let p = this.announcing.get(name);
    if (p === undefined) {
      p = this.serial(name, async () => {
        this.announcing.delete(name);
        const r = await this.assign(name, (have) => Math.max(1, have), true);
        return r.record;
      });
      // Until it starts, later events for the node share this attempt; once it runs, a new event
      // queues another (which finds the node complete with one read).
      this.announcing.set(name, p);
    }
    return p;
  }

  /**
   * One more set for a node whose agent holds `sets`, if the node holds no more than that;
   * otherwise (a repeat: a lost reply, a restart) the node's sets as they are. Never set 0.
   */
  async grow(name: string, sets: number): Promise<{ record: NodeRecord; added: boolean }> {
    if (this.opts.node(name).status === 'deleted') {
      throw new AssignError(IpamErrorCode.unknownNode, `node ${name} has been deleted`);
    }
    return this.serial(name, () =>
      this.assign(name, (have) => (have <= sets ? have + 1 : have), false),
    ).then((r) => {
      if (r.record === undefined) throw new Error(`node ${name}: no record after a grow`);
      return { record: r.record, added: r.added };
    });
  }

  /**
   * A node's agent reported the blocks it holds: its legacy keys go (the agent has adopted what
   * they said), and a node without a record gets it back from the report.
   */
  heldReported(name: string): Promise<void> {
    return this.serial(name, async () => {
      await this.purgeLegacy(name);
      if (this.opts.node(name).status === 'deleted') return;
      const cur = await this.store.node(name);
      if (!cur.present) await this.rebuild(name, cur);
    });
  }

  /**
   * Reads the record and gives the node the blocks it lacks for `targetOf(sets it holds)` sets,
   * in one revision-checked write; repeats (up to MAX_ROUNDS) when another replica wrote first.
   */
  private async assign(
    name: string,
    targetOf: (have: number) => number,
    announced: boolean,
  ): Promise<{ record: NodeRecord | undefined; added: boolean }> {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const cur = await this.store.node(name);
      if (!cur.present) {
        const info = this.opts.node(name);
        if (info.status === 'deleted') {
          throw new AssignError(IpamErrorCode.unknownNode, `node ${name} has been deleted`);
        }
        // The agent holds blocks ipam has no record of: the bucket was lost. Its report is the
        // truth, and a new set 0 would hand the node blocks it does not use.
        if (setsFromBlocks(this.opts.held.blocks(name)).length > 0) {
          await this.rebuild(name, cur);
          continue;
        }
        if (!announced && info.status !== 'live') {
          throw new AssignError(
            IpamErrorCode.unknownNode,
            `node ${name} is unknown: kube-bridge has not announced it`,
          );
        }
        // A grow names the sets its agent holds; with no record and no report ipam cannot tell
        // which (a fresh set 0 would be other blocks than the agent's, and its repeat would add
        // another set). Set 0 comes with the announcement, or from the agent's report.
        if (!announced) {
          throw new AssignError(
            IpamErrorCode.unavailable,
            `node ${name} has no block set yet: set 0 comes when kube-bridge announces it, or from its agent's held-blocks report`,
          );
        }
      }
      const record = cur.present ? cur.value : undefined;
      const missing = missingBlocks(record, targetOf(setCount(record)), this.families);
      if (missing.length === 0) return { record, added: false };
      if (this.claimsPaused) {
        throw new AssignError(
          IpamErrorCode.unavailable,
          'ipam found its bucket empty and is waiting for node agents to report the blocks they hold',
        );
      }
      const placed = await this.claimAll(name, missing);
      // A claim older than half the orphan grace may already look orphaned to a GC: give it
      // back rather than write a record that uses it (only a stall of minutes gets here).
      if (placed.some((p) => this.opts.now() - p.claim.at >= this.opts.orphanGraceMs / 2)) {
        await this.withdraw(placed);
        continue;
      }
      const next = placeBlocks(
        record,
        name,
        this.opts.node(name).uid,
        placed.map((p) => ({ set: p.set, family: p.family, block: p.claim })),
        this.opts.now(),
      );
      let written;
      try {
        written = await this.store.writeIf(IpamKey.node(name), next, cur.revision);
      } catch (err) {
        return { record: await this.settle(name, placed, err), added: true };
      }
      if (written === 'conflict') {
        this.opts.metrics.conflicts.inc({ key: 'node' });
        await this.withdraw(placed);
        continue;
      }
      for (const p of placed)
        this.opts.metrics.nodeBlocks.inc({ family: p.family, outcome: 'claimed' });
      this.opts.logger.info(
        { node: name, sets: next.sets.length, added: placed.map((p) => p.claim.cidr) },
        'node blocks assigned',
      );
      await this.opts.effects.assigned(next);
      return { record: next, added: true };
    }
    throw new StoreError(`node ${name}: its record kept changing (${MAX_ROUNDS} attempts)`);
  }

  /**
   * The record write failed without an answer: it may have happened. If the record now holds the
   * claims, it did. Otherwise the claims are left in place (the write may still land late, and
   * then it uses them): GC removes them as orphans if it never does.
   */
  private async settle(name: string, placed: readonly Placed[], err: unknown): Promise<NodeRecord> {
    let now: Current<NodeRecord>;
    try {
      now = await this.store.node(name);
    } catch {
      throw err;
    }
    if (now.present && placed.every((p) => holdsBlock(now.value, p.family, p.claim.cidr))) {
      this.opts.logger.info({ node: name }, 'node record write unacknowledged, but done');
      await this.opts.effects.assigned(now.value);
      return now.value;
    }
    this.opts.logger.warn(
      { node: name, err, claims: placed.map((p) => p.claim.key) },
      'node record write failed; its block claims are left to GC',
    );
    throw err;
  }

  /**
   * Claims a block for every slot, all or nothing: when a family's pools are exhausted or a claim
   * fails, every claim made here is withdrawn, so a refused set leaves nothing half-claimed.
   */
  private async claimAll(name: string, missing: readonly BlockSlot[]): Promise<Placed[]> {
    const placed: Placed[] = [];
    let exhausted: Family | undefined;
    let failure: unknown;
    await Promise.all(
      this.families.map(async (family) => {
        const claimer = this.claimers.get(family);
        for (const slot of missing.filter((m) => m.family === family)) {
          if (exhausted !== undefined || failure !== undefined || claimer === undefined) return;
          let claim: ClaimedBlock | undefined;
          try {
            claim = await claimer.claim(name);
          } catch (err) {
            failure ??= err;
            return;
          }
          if (claim === undefined) {
            exhausted ??= family;
            return;
          }
          placed.push({ ...slot, claim });
        }
      }),
    );
    if (exhausted === undefined && failure === undefined) return placed;
    await this.withdraw(placed);
    if (exhausted !== undefined) {
      const layout = this.opts.config.families.find((l) => l.family === exhausted);
      const key = exhausted === 'IPv4' ? ConfigKey.v4Cidr : ConfigKey.v6Cidr;
      const pools = (layout?.pools ?? []).map(formatCidr).join(', ');
      const message = `no free ${exhausted} block for node ${name} in ${key} (${pools})`;
      this.opts.metrics.nodeBlocks.inc({ family: exhausted, outcome: 'exhausted' });
      this.opts.metrics.exhausted.inc({ family: exhausted });
      this.opts.effects.exhausted(name, exhausted, message);
      throw new AssignError(IpamErrorCode.exhausted, message);
    }
    throw failure;
  }

  /** Gives claims back (revision-checked, so only these claims); what fails is GC's. */
  private async withdraw(placed: readonly Placed[]): Promise<void> {
    for (const { claim } of placed) {
      try {
        if (await this.store.deleteIf(claim.key, claim.revision)) {
          this.claimers.get(claim.family)?.forget(claim.cidr);
        }
        this.opts.metrics.nodeBlocks.inc({ family: claim.family, outcome: 'lost' });
      } catch (err) {
        this.opts.logger.warn({ err, key: claim.key }, 'could not withdraw a block claim; GC will');
      }
    }
  }

  /**
   * Re-creates an absent record from the node agent's report: the same sets in the same order,
   * each block claimed for the node. A block another node has claimed is logged and counted,
   * never taken from it (the record still lists it: it is what the agent uses).
   */
  private async rebuild(name: string, cur: Current<NodeRecord>): Promise<void> {
    const sets = setsFromBlocks(this.opts.held.blocks(name));
    if (sets.length === 0) return;
    const record: NodeRecord = {
      v: 2,
      name,
      uid: this.opts.node(name).uid,
      sets,
      createdAt: this.opts.now(),
    };
    for (const b of recordBlocks(record)) {
      const key = IpamKey.block(b.family, b.cidr);
      const made = await this.store.create(key, { node: name, at: this.opts.now() });
      if (made !== 'conflict') {
        this.claimers.get(b.family)?.note(b.cidr);
        continue;
      }
      const claim = await this.store.blockClaim(key);
      if (claim.present && claim.value.node !== name) {
        this.opts.metrics.rebuildConflicts.inc({ family: b.family });
        this.opts.logger.error(
          { node: name, block: b.cidr, claimedBy: claim.value.node },
          "a block this node's agent holds is claimed by another node: both use it; left with the other node",
        );
      }
    }
    const written = await this.store.writeIf(IpamKey.node(name), record, cur.revision);
    if (written === 'conflict') return;
    this.opts.metrics.rebuilds.inc();
    this.opts.logger.info(
      { node: name, sets: sets.length },
      "node record rebuilt from its agent's report of the blocks it holds",
    );
    await this.opts.effects.assigned(record);
  }

  // ---- garbage collection ----

  /** Deleted nodes' blocks back to the pool, then block claims no record uses. */
  async gcPass(view: NodesView): Promise<GcSummary> {
    const records = await this.readRecords();
    const now = this.opts.now();
    let releasedNodes = 0;
    for (const c of planNodeGc(
      [...records.values()],
      view,
      this.missedNodes,
      now,
      this.opts.nodeGraceMs,
    )) {
      try {
        if (await this.serial(c.node, () => this.deleteNode(c.node, c.createdAt))) {
          releasedNodes++;
          records.delete(c.node);
        }
      } catch (err) {
        this.opts.logger.warn(
          { err, node: c.node },
          "could not return a deleted node's blocks; next pass",
        );
      }
    }
    const claims = await this.readClaims();
    let releasedOrphanBlocks = 0;
    const held = this.opts.held;
    for (const c of planOrphanBlocks(
      claims,
      records,
      (n, f, cidr) => held.heldBy(n, f, cidr),
      now,
      this.opts.orphanGraceMs,
    )) {
      const released = await this.serial(c.node, async () => {
        // Look again right before: the record may have been written since the scan.
        const cur = await this.store.node(c.node);
        if (cur.present && holdsBlock(cur.value, c.family, c.cidr)) return false;
        return this.store.deleteIf(c.key, c.revision);
      });
      if (!released) continue;
      releasedOrphanBlocks++;
      this.opts.metrics.nodeBlocks.inc({ family: c.family, outcome: 'released' });
      this.claimers.get(c.family)?.forget(c.cidr);
      this.opts.logger.info({ key: c.key, node: c.node }, 'orphan block claim removed');
    }
    return { releasedNodes, releasedOrphanBlocks, scannedNodes: records.size };
  }

  /**
   * Returns a deleted node's blocks: its allocation records in the stream go first (a stale held
   * report would pin the blocks; and if this fails, the record stays for the next pass to try
   * again), then its legacy keys, its record, its block claims; then the tombstone.
   */
  private async deleteNode(name: string, createdAt: number): Promise<boolean> {
    const cur = await this.store.node(name);
    if (!cur.present || cur.value.createdAt !== createdAt) return false;
    await this.opts.effects.purgeAllocations(name);
    this.opts.held.forget(name);
    this.repin();
    await this.purgeLegacy(name, true);
    if (!(await this.store.purgeIf(IpamKey.node(name), cur.revision))) return false;
    for (const b of recordBlocks(cur.value)) {
      const key = IpamKey.block(b.family, b.cidr);
      const claim = await this.store.blockClaim(key);
      if (
        claim.present &&
        claim.value.node === name &&
        (await this.store.deleteIf(key, claim.revision))
      ) {
        this.opts.metrics.nodeBlocks.inc({ family: b.family, outcome: 'released' });
        this.claimers.get(b.family)?.forget(b.cidr);
      }
    }
    await this.opts.effects.returned(cur.value);
    this.opts.logger.info(
      { node: name, blocks: recordBlocks(cur.value).map((b) => b.cidr) },
      'deleted node: blocks returned to the pool',
    );
    return true;
  }

  /** Every node record, decoded (one that does not decode is logged and left alone). */
  async readRecords(): Promise<Map<string, NodeRecord>> {
    const out = new Map<string, NodeRecord>();
    await forEachLimited(await this.store.keys(IpamKey.nodeFilter), async (key) => {
      try {
        const r = await this.store.node(key.slice(IpamKey.nodePrefix.length));
        if (r.present) out.set(r.value.name, r.value);
      } catch (err) {
        if (!(err instanceof StoreError)) throw err;
        this.opts.logger.warn({ err, key }, 'node record does not read; left alone');
      }
    });
    return out;
  }

  private async readClaims(): Promise<BlockClaim[]> {
    const keys = await this.store.keys(IpamKey.blockFilter);
    const claims: BlockClaim[] = [];
    await forEachLimited(keys, async (key) => {
      const b = parseBlockKey(key);
      const claim = b === undefined ? undefined : await this.store.blockClaim(key);
      if (b === undefined || claim === undefined || !claim.present) return;
      claims.push({
        key,
        ...b,
        node: claim.value.node,
        at: claim.value.at,
        revision: claim.revision,
      });
    });
    for (const c of this.claimers.values()) c.relearn(claims.map((c) => c.key));
    return claims;
  }

  /** Purges the node's legacy keys: once its agent reported, or (`always`) when it is deleted. */
  private async purgeLegacy(name: string, always = false): Promise<void> {
    const keys = always
      ? [
          ...(await this.store.keys(IpamKey.slotFilter(name))),
          ...(await this.store.keys(IpamKey.ownerFilter(name))),
        ]
      : (this.legacy.get(name) ?? []);
    let purged = 0;
    for (const key of keys) {
      const rev = await this.store.revisionOf(key);
      if (rev !== undefined && (await this.store.purgeIf(key, rev))) purged++;
    }
    this.legacy.delete(name);
    if (purged > 0) {
      this.opts.metrics.legacyKeysPurged.inc(purged);
      this.opts.logger.info({ node: name, keys: purged }, 'legacy slot and owner keys purged');
    }
  }

  /** Runs `fn` after everything queued for `node` on this replica, one at a time per node. */
  private serial<T>(node: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(node) ?? Promise.resolve();
    const run = prev.then(fn);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(node, tail);
    void tail.then(() => {
      if (this.queues.get(node) === tail) this.queues.delete(node);
    });
    return run;
  }
}

async function forEachLimited<T>(
  items: readonly T[],
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(READ_CONCURRENCY, items.length) }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}
