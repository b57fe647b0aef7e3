import {
  IdentityLabelsRecord,
  IdentityRecord,
  MAX_POD_IDENTITY,
  PolicyIdentityKey,
  ReservedIdentity,
} from '@dyad/contracts';
import type { KvBucket, KvEntry, KvWatch } from '@dyad/bus';
import type { z } from 'zod';
import { IdentityAllocationError, IdentityStoreError } from './errors.ts';
import { labelSetHash, labelSetKey } from './labels.ts';

/** How long a purge marker stays: long enough for every replica's watch to see it go by. */
const PURGE_MARKER_TTL = '10m';
const MAX_ATTEMPTS = 32;

const enc = new TextEncoder();
const dec = new TextDecoder();

export interface IdentityStoreLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface IdentityStoreOptions {
  readonly kv: KvBucket;
  readonly logger: IdentityStoreLogger;
  /** An identity unused this long is freed. */
  readonly graceMs: number;
  /** Called when an identity becomes complete (its labels key names it) or stops being so. */
  readonly onChange: (identity: number, labels: readonly string[] | undefined) => void;
  readonly now?: () => number;
  /** Range of numbers handed out; tests narrow it to make collisions likely. */
  readonly min?: number;
  readonly max?: number;
}

interface IdEntry {
  readonly labels: readonly string[];
  readonly key: string;
  readonly hash: string;
  readonly revision: number;
}

interface LabelsEntry {
  readonly identity: number;
  readonly revision: number;
}

function storeError(what: string, err: unknown): IdentityStoreError {
  return new IdentityStoreError(`${what}: ${err instanceof Error ? err.message : String(err)}`, {
    cause: err,
  });
}

function decode<S extends z.ZodType>(schema: S, bytes: Uint8Array): z.output<S> | undefined {
  try {
    const r = schema.safeParse(JSON.parse(dec.decode(bytes)));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The identity allocator over the DYAD_POLICY_IDENTITIES bucket (keys in PolicyIdentityKey).
 * A label set gets a number in two creates: `id.<n>` (the number is taken) then
 * `labels.<hash>` (the label set has it). Both are compare-and-set creates, so of replicas
 * racing for one number only one takes it, and of replicas racing for one label set only one
 * names it; a loser frees what it took and uses the winner's. Every replica keeps a copy of the
 * bucket, fed by a watch, so lookups are local and see the others' allocations and frees.
 *
 * Numbers are handed out upwards from the highest known, wrapping at the top, so a freed number
 * is not reused until the whole range went round: an agent or ipcache still holding it by then
 * would be very late.
 */
export class IdentityStore {
  readonly #o: IdentityStoreOptions;
  readonly #min: number;
  readonly #max: number;
  readonly #ids = new Map<number, IdEntry>();
  readonly #labels = new Map<string, LabelsEntry>();
  /** The last revision applied per key, deletes included, so a late watch entry never rolls back. */
  readonly #seen = new Map<string, number>();
  readonly #inflight = new Map<string, Promise<number>>();
  /** When each identity was first seen unused (by gc). */
  readonly #unusedSince = new Map<number, number>();
  #cursor: number;
  #watch: KvWatch = {
    stop() {},
    async *[Symbol.asyncIterator]() {},
  };
  #watching: Promise<void> = Promise.resolve();

  constructor(options: IdentityStoreOptions) {
    this.#o = options;
    this.#min = options.min ?? ReservedIdentity.firstPod;
    this.#max = options.max ?? MAX_POD_IDENTITY;
    this.#cursor = this.#min;
  }

  /**
   * Loads the bucket and follows it. The watch starts first, so nothing written meanwhile is
   * missed. New numbers start above the highest in the bucket and above `floor` (the highest
   * the identity stream still names: were the bucket lost, numbers agents may still hold are not
   * handed out again).
   */
  async start(floor = 0): Promise<void> {
    const { kv } = this.#o;
    try {
      this.#watch = await kv.watchUpdates();
      this.#watching = (async () => {
        for await (const e of this.#watch)
          this.#apply(e.key, e.revision, e.operation === 'PUT' ? e.value : undefined);
      })().catch((err: unknown) => this.#o.logger.warn({ err }, 'identity bucket watch ended'));
      for (const key of await kv.keys()) {
        const e = await kv.get(key);
        if (e !== undefined)
          this.#apply(key, e.revision, e.operation === 'PUT' ? e.value : undefined);
      }
    } catch (err) {
      throw storeError('loading the identity bucket', err);
    }
    let top = Math.min(Math.max(this.#min - 1, floor), this.#max);
    for (const id of this.#ids.keys()) top = Math.max(top, id);
    this.#cursor = top + 1;
  }

  async stop(): Promise<void> {
    this.#watch.stop();
    await this.#watching;
  }

  /** The identity of a label set, if it has one. */
  lookup(labels: readonly string[]): number | undefined {
    const l = this.#labels.get(labelSetHash(labels));
    if (l === undefined) return undefined;
    const id = this.#ids.get(l.identity);
    // Both keys must agree: a labels key whose number is held by other labels is not an identity.
    return id !== undefined && id.key === labelSetKey(labels) ? l.identity : undefined;
  }

  labelsOf(identity: number): readonly string[] | undefined {
    const id = this.#ids.get(identity);
    return id !== undefined && this.#labels.get(id.hash)?.identity === identity
      ? id.labels
      : undefined;
  }

  /** Every complete identity and its labels. */
  all(): Map<number, readonly string[]> {
    const out = new Map<number, readonly string[]>();
    for (const [n, id] of this.#ids)
      if (this.#labels.get(id.hash)?.identity === n) out.set(n, id.labels);
    return out;
  }

  /** The label set's identity, allocating one if it has none. Concurrent calls for one set share one allocation. */
  allocate(labels: readonly string[]): Promise<number> {
    const known = this.lookup(labels);
    if (known !== undefined) return Promise.resolve(known);
    const hash = labelSetHash(labels);
    let p = this.#inflight.get(hash);
    if (p === undefined) {
      p = this.#allocate(labels, hash).finally(() => this.#inflight.delete(hash));
      this.#inflight.set(hash, p);
    }
    return p;
  }

  async #allocate(labels: readonly string[], hash: string): Promise<number> {
    const key = labelSetKey(labels);
    const labelsKey = PolicyIdentityKey.labels(hash);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      // Another replica may have named this label set since our copy last heard: ask the bucket.
      const named = await this.#read(labelsKey);
      if (named !== undefined) {
        const rec = decode(IdentityLabelsRecord, named.value);
        const id = rec === undefined ? undefined : await this.#readId(rec.identity);
        if (rec !== undefined && id?.key === key) return rec.identity;
        // A labels key that names nothing, or other labels: broken; free it and allocate anew.
        this.#o.logger.warn(
          { key: labelsKey, identity: rec?.identity },
          'identity labels key names no matching identity; replacing it',
        );
        await this.#purgeIf(labelsKey, named.revision);
        continue;
      }
      const n = this.#nextCandidate();
      const idKey = PolicyIdentityKey.id(n);
      const record = { v: 1 as const, labels: [...labels], createdAt: this.#now() };
      const idRevision = await this.#create(idKey, enc.encode(JSON.stringify(record)));
      if (idRevision === 'conflict') {
        // Taken meanwhile: learn by whom, and try the next number.
        await this.#readId(n);
        continue;
      }
      this.#apply(idKey, idRevision, enc.encode(JSON.stringify(record)));
      const labelsValue = enc.encode(JSON.stringify({ v: 1, identity: n }));
      let rev: number | 'conflict';
      try {
        rev = await this.#create(labelsKey, labelsValue);
      } catch (err) {
        // The write failed: free our number before saying so.
        await this.#purgeIf(idKey, idRevision);
        throw err;
      }
      if (rev !== 'conflict') {
        this.#apply(labelsKey, rev, labelsValue);
        return n;
      }
      // Lost the label set to another replica: free our number; the next round reads the winner's.
      await this.#purgeIf(idKey, idRevision);
    }
    throw new IdentityAllocationError(
      `no identity for ${labels.join(',')} after ${MAX_ATTEMPTS} attempts`,
    );
  }

  #nextCandidate(): number {
    const span = this.#max - this.#min + 1;
    for (let i = 0; i < span; i++) {
      const n = this.#cursor;
      this.#cursor = n >= this.#max ? this.#min : n + 1;
      if (!this.#ids.has(n)) return n;
    }
    throw new IdentityAllocationError(`every identity in ${this.#min}-${this.#max} is taken`);
  }

  /**
   * Frees identities no pod has used for the grace period: the labels key first (no one can
   * look the number up any more), then the number. Both are purges that expect the revision
   * this replica knows, so an identity another replica just named again is left alone. Numbers
   * no labels key names (a replica died between its two creates) go the same way.
   */
  async gc(inUse: (identity: number) => boolean): Promise<number[]> {
    const now = this.#now();
    const freed: number[] = [];
    for (const [n, id] of [...this.#ids]) {
      if (inUse(n) || this.#inflightFor(id.hash)) {
        this.#unusedSince.delete(n);
        continue;
      }
      const since = this.#unusedSince.get(n);
      if (since === undefined) {
        this.#unusedSince.set(n, now);
        continue;
      }
      if (now - since < this.#o.graceMs) continue;
      const named = this.#labels.get(id.hash);
      if (
        named?.identity === n &&
        !(await this.#purgeIf(PolicyIdentityKey.labels(id.hash), named.revision))
      )
        continue;
      if (await this.#purgeIf(PolicyIdentityKey.id(n), id.revision)) {
        this.#unusedSince.delete(n);
        freed.push(n);
      }
    }
    for (const n of this.#unusedSince.keys()) if (!this.#ids.has(n)) this.#unusedSince.delete(n);
    if (freed.length > 0) this.#o.logger.info({ freed }, 'unused identities freed');
    return freed;
  }

  #inflightFor(hash: string): boolean {
    return this.#inflight.has(hash);
  }

  async #read(key: string): Promise<{ value: Uint8Array; revision: number } | undefined> {
    let e: KvEntry | undefined;
    try {
      e = await this.#o.kv.get(key);
    } catch (err) {
      throw storeError(`reading ${key}`, err);
    }
    if (e === undefined) return undefined;
    this.#apply(key, e.revision, e.operation === 'PUT' ? e.value : undefined);
    return e.operation === 'PUT' ? { value: e.value, revision: e.revision } : undefined;
  }

  async #create(key: string, value: Uint8Array): Promise<number | 'conflict'> {
    try {
      return await this.#o.kv.create(key, value);
    } catch (err) {
      throw storeError(`creating ${key}`, err);
    }
  }

  async #readId(n: number): Promise<IdEntry | undefined> {
    await this.#read(PolicyIdentityKey.id(n));
    return this.#ids.get(n);
  }

  /** Purges the key if its last revision is `revision`; false when it moved on meanwhile. */
  async #purgeIf(key: string, revision: number): Promise<boolean> {
    let purged: boolean;
    try {
      purged = await this.#o.kv.purge(key, revision, PURGE_MARKER_TTL);
    } catch (err) {
      throw storeError(`purging ${key}`, err);
    }
    if (purged) this.#apply(key, revision + 0.5, undefined);
    return purged;
  }

  /** Applies one key's value (undefined: deleted) if it is newer than what this copy has. */
  #apply(key: string, revision: number, value: Uint8Array | undefined): void {
    if ((this.#seen.get(key) ?? 0) >= revision) return;
    this.#seen.set(key, revision);
    const before = this.#completeness(key);
    if (key.startsWith(PolicyIdentityKey.idPrefix)) {
      const n = Number(key.slice(PolicyIdentityKey.idPrefix.length));
      if (!Number.isSafeInteger(n)) return;
      const rec = value === undefined ? undefined : decode(IdentityRecord, value);
      if (value !== undefined && rec === undefined)
        this.#o.logger.warn({ key }, 'identity record does not decode; ignored');
      if (rec === undefined) this.#ids.delete(n);
      else
        this.#ids.set(n, {
          labels: rec.labels,
          key: labelSetKey(rec.labels),
          hash: labelSetHash(rec.labels),
          revision,
        });
    } else if (key.startsWith(PolicyIdentityKey.labelsPrefix)) {
      const hash = key.slice(PolicyIdentityKey.labelsPrefix.length);
      const rec = value === undefined ? undefined : decode(IdentityLabelsRecord, value);
      if (value !== undefined && rec === undefined)
        this.#o.logger.warn({ key }, 'identity labels record does not decode; ignored');
      if (rec === undefined) this.#labels.delete(hash);
      else this.#labels.set(hash, { identity: rec.identity, revision });
    }
    const after = this.#completeness(key);
    for (const n of before.keys()) if (!after.has(n)) this.#o.onChange(n, undefined);
    for (const [n, labels] of after) {
      const was = before.get(n);
      if (was === undefined || labelSetKey(was) !== labelSetKey(labels))
        this.#o.onChange(n, labels);
    }
  }

  /** The complete identities one key takes part in, with their labels. */
  #completeness(key: string): Map<number, readonly string[]> {
    const out = new Map<number, readonly string[]>();
    const check = (n: number): void => {
      const labels = this.labelsOf(n);
      if (labels !== undefined) out.set(n, labels);
    };
    if (key.startsWith(PolicyIdentityKey.idPrefix))
      check(Number(key.slice(PolicyIdentityKey.idPrefix.length)));
    else if (key.startsWith(PolicyIdentityKey.labelsPrefix)) {
      const l = this.#labels.get(key.slice(PolicyIdentityKey.labelsPrefix.length));
      if (l !== undefined) check(l.identity);
    }
    return out;
  }

  #now(): number {
    return (this.#o.now ?? Date.now)();
  }
}
