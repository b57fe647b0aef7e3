import type { KV } from '@dyad/bus';
import { IpamKey, IpamNodeRecord } from '@dyad/contracts';
import { nextFree } from './carve.ts';
import type { NodeRecord } from './record.ts';
import { StoreError } from './errors.ts';
import { decodeJson, parseSlotKey } from './store.ts';

type Watch = Awaited<ReturnType<KV['watch']>>;

/** How long `sync` waits for the watch to bring its marker back. */
const SYNC_TIMEOUT_MS = 10_000;

/**
 * Every slot claim with its value, as stored now: a watch read until a marker written after it
 * started comes back. For GC, which needs the values the table does not keep.
 */
export async function snapshotSlots(
  kv: KV,
  marker: string,
): Promise<{ key: string; revision: number; value: Uint8Array }[]> {
  const w = await kv.watch({ key: [`${IpamKey.slotPrefix}>`, marker] });
  const rev = await kv.put(marker, String(Date.now()));
  const out = new Map<string, { key: string; revision: number; value: Uint8Array }>();
  try {
    for await (const e of w) {
      if (e.key === marker) {
        if (e.revision >= rev) break;
        continue;
      }
      if (e.operation === 'PUT')
        out.set(e.key, { key: e.key, revision: e.revision, value: e.value });
      else out.delete(e.key);
    }
  } finally {
    w.stop();
  }
  return [...out.values()];
}

/**
 * What this replica knows of the bucket's node records and slot claims, fed by a KV watch and by
 * its own writes. It is a hint, never the judge: it picks a slot likely to be free and knows the
 * revision to expect when claiming it (the delete marker a release left), so a claim usually
 * succeeds on the first write; a stale hint only costs a conflict, which the claim survives.
 */
export interface SlotState {
  /** Revision of the key's last message; -1: not known (read the key before claiming it). */
  readonly rev: number;
  readonly live: boolean;
}

class NodeSlots {
  readonly slots = new Map<number, SlotState>();
  /** Slots this replica is claiming right now. */
  readonly pending = new Set<number>();
  /** Told when a claim here ends (see IpamTable.claimEnded). */
  readonly onSettle: (() => void)[] = [];
  liveCount = 0;
  maxSlot = -1;
  cursor: number | undefined;

  set(slot: number, s: SlotState): void {
    const prev = this.slots.get(slot);
    if (prev !== undefined && prev.rev > s.rev && s.rev !== -1) return;
    if (prev?.live === true) this.liveCount--;
    if (s.live) this.liveCount++;
    if (slot > this.maxSlot) this.maxSlot = slot;
    this.slots.set(slot, s);
  }
}

export interface Pick {
  readonly slot: number;
  /** The revision a claim of this slot expects. */
  readonly expected: number;
}

export class IpamTable {
  readonly nodes = new Map<string, { record: NodeRecord; rev: number }>();
  private readonly bySlotNode = new Map<string, NodeSlots>();
  private readonly waiters: { key: string; rev: number; resolve: () => void }[] = [];
  private readonly syncSeen = new Map<string, number>();
  private readonly now: () => number;
  private readonly watches: (Watch | undefined)[] = [undefined, undefined];
  /** Watches (0: slots, 1: nodes) that failed and are being opened again. */
  private readonly down = new Set<number>();
  private kv: KV | undefined;
  private onError: (err: unknown) => void = () => undefined;
  private closed = false;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  /**
   * Follows the bucket's node, slot and sync keys from their current values on. A watch that
   * fails is opened again (it replays every key's last revision, so the table converges); until
   * it is back the table is not `following`, and `sync` fails rather than wait for it.
   */
  async start(kv: KV, onError: (err: unknown) => void): Promise<void> {
    this.kv = kv;
    this.onError = onError;
    for (const source of [0, 1] as const) this.follow(source, await this.open(source));
  }

  /** Both watches are running (a failed one is being opened again otherwise). */
  get following(): boolean {
    return this.down.size === 0;
  }

  private open(source: 0 | 1): Promise<Watch> {
    const kv = this.requireKv();
    return source === 0
      ? // Slots are followed by key and revision only: GC reads values when it needs them.
        kv.watch({ key: [`${IpamKey.slotPrefix}>`, `${IpamKey.syncPrefix}>`], headers_only: true })
      : kv.watch({ key: [`${IpamKey.nodePrefix}>`, `${IpamKey.syncPrefix}>`] });
  }

  private follow(source: 0 | 1, first: Watch): void {
    void (async () => {
      let w: Watch | undefined = first;
      for (let failures = 0; !this.closed;) {
        if (w !== undefined) {
          this.watches[source] = w;
          this.down.delete(source);
          try {
            for await (const e of w) {
              failures = 0;
              this.apply(e.key, e.operation, e.revision, e.value, source);
            }
            if (this.closed) return;
            throw new StoreError('the KV watch ended');
          } catch (err) {
            if (this.closed) return;
            this.down.add(source);
            this.onError(err);
          }
        }
        await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** failures++)));
        if (this.closed) return;
        w = await this.open(source).catch((err: unknown) => {
          this.onError(err);
          return undefined;
        });
        if (this.closed) w?.stop();
      }
    })();
  }

  stop(): void {
    this.closed = true;
    for (const w of this.watches) w?.stop();
  }

  /**
   * Resolves once the watch has delivered everything written before this call: write a sync
   * key, wait to see it come back. Fails with StoreError after `timeoutMs`: a caller waiting on
   * a watch that is down gets an answer it can retry, not silence.
   */
  async sync(kv: KV, replicaId: string, timeoutMs = SYNC_TIMEOUT_MS): Promise<void> {
    const key = IpamKey.sync(replicaId);
    const rev = await kv.put(key, String(this.now()));
    // A watch may deliver the marker before the put's acknowledgement arrives.
    if (this.seenByAll(key, rev)) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new StoreError(`the KV watch did not catch up within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = {
        key,
        rev,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      this.waiters.push(waiter);
    });
  }

  private seenByAll(key: string, rev: number): boolean {
    return [0, 1].every((src) => (this.syncSeen.get(`${src}|${key}`) ?? 0) >= rev);
  }

  apply(
    key: string,
    op: 'PUT' | 'DEL' | 'PURGE',
    rev: number,
    value: Uint8Array,
    source = 0,
  ): void {
    if (key.startsWith(IpamKey.slotPrefix)) {
      const k = parseSlotKey(key);
      if (k === undefined) return;
      this.noteSlot(k.node, k.slot, rev, op === 'PUT');
    } else if (key.startsWith(IpamKey.nodePrefix)) {
      const name = key.slice(IpamKey.nodePrefix.length);
      const have = this.nodes.get(name);
      if (have !== undefined && have.rev > rev) return;
      if (op === 'PUT') {
        try {
          this.nodes.set(name, { record: decodeJson(IpamNodeRecord, key, value), rev });
        } catch {
          this.nodes.delete(name);
        }
      } else {
        this.nodes.delete(name);
        this.bySlotNode.delete(name);
      }
    } else if (key.startsWith(IpamKey.syncPrefix)) {
      const seen = `${source}|${key}`;
      this.syncSeen.set(seen, Math.max(rev, this.syncSeen.get(seen) ?? 0));
      for (let i = this.waiters.length - 1; i >= 0; i--) {
        const w = this.waiters[i];
        if (w !== undefined && w.key === key && this.seenByAll(key, w.rev)) {
          this.waiters.splice(i, 1);
          w.resolve();
        }
      }
    }
  }

  noteNode(name: string, record: NodeRecord, rev: number): void {
    const have = this.nodes.get(name);
    if (have === undefined || have.rev <= rev) this.nodes.set(name, { record, rev });
  }

  private slotsOf(node: string): NodeSlots {
    let s = this.bySlotNode.get(node);
    if (s === undefined) {
      s = new NodeSlots();
      this.bySlotNode.set(node, s);
    }
    return s;
  }

  /** A slot's state as learnt from a write or the watch; older revisions do not overwrite newer. */
  noteSlot(node: string, slot: number, rev: number, live: boolean): void {
    this.slotsOf(node).set(slot, { rev, live });
  }

  /** A claim lost: someone holds the slot, revision unknown until the watch says. */
  noteTaken(node: string, slot: number): void {
    const s = this.slotsOf(node);
    // Another replica is working this part of the block: search elsewhere from now on.
    s.cursor = undefined;
    const prev = s.slots.get(slot);
    if (prev?.live === true) return;
    s.set(slot, { rev: -1, live: true });
  }

  /** A slot believed free (or never used), not being claimed here; it is marked pending. */
  pick(node: string, capacity: number): Pick | undefined {
    const s = this.slotsOf(node);
    if (s.cursor === undefined) s.cursor = Math.floor(Math.random() * Math.max(1, capacity));
    const taken = (x: bigint): boolean => {
      const n = Number(x);
      return s.slots.get(n)?.live === true || s.pending.has(n);
    };
    // Live slots plus those being claimed here that the watch has not shown live yet; slots past
    // the capacity only exist after a block shrank, and then they are counted out.
    let takenCount = 0;
    for (const n of s.pending) if (s.slots.get(n)?.live !== true) takenCount++;
    if (s.maxSlot < capacity) takenCount += s.liveCount;
    else for (const [n, st] of s.slots) if (st.live && n < capacity) takenCount++;
    const found = nextFree(taken, takenCount, 0n, BigInt(capacity - 1), BigInt(s.cursor));
    if (found === undefined) return undefined;
    const slot = Number(found);
    s.cursor = slot + 1 >= capacity ? 0 : slot + 1;
    s.pending.add(slot);
    const st = s.slots.get(slot);
    return { slot, expected: st === undefined ? 0 : st.rev };
  }

  /** Ends a pick: the claim is written, lost or abandoned. */
  settle(node: string, slot: number): void {
    const s = this.bySlotNode.get(node);
    if (s === undefined || !s.pending.delete(slot)) return;
    for (const wake of s.onSettle.splice(0)) wake();
  }

  /** How many slots of the node this replica is claiming right now. */
  claiming(node: string): number {
    return this.bySlotNode.get(node)?.pending.size ?? 0;
  }

  /**
   * Resolves when one of this replica's claims on the node ends, or after `timeoutMs` (false):
   * a claim in flight counts as taken, but it may yet lose to another replica's or be abandoned.
   */
  claimEnded(node: string, timeoutMs: number): Promise<boolean> {
    const s = this.slotsOf(node);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const i = s.onSettle.indexOf(wake);
        if (i >= 0) s.onSettle.splice(i, 1);
        resolve(false);
      }, timeoutMs);
      const wake = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      s.onSettle.push(wake);
    });
  }

  /** Live slots of a node inside its capacity. */
  used(node: string, capacity: number): number {
    const s = this.bySlotNode.get(node);
    if (s === undefined) return 0;
    if (s.slots.size <= capacity) return s.liveCount;
    let n = 0;
    for (const [k, st] of s.slots) if (st.live && k < capacity) n++;
    return n;
  }

  slotState(node: string, slot: number): SlotState | undefined {
    return this.bySlotNode.get(node)?.slots.get(slot);
  }

  private requireKv(): KV {
    if (this.kv === undefined) throw new Error('the table is not started');
    return this.kv;
  }

  nodeNames(): string[] {
    return [...new Set([...this.nodes.keys(), ...this.bySlotNode.keys()])];
  }
}
