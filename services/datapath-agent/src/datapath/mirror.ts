import type { BpfMap } from '@dyad/libbpf-ts';
import { ByteTable } from './byte-table.ts';
import { nextTick } from './schedule.ts';
import type { Schedule } from './schedule.ts';

/** Counters of what actually reached the kernel for one map. */
export interface MapWriteStats {
  /** Syscalls that changed the map (batch update, batch delete, or a single fallback call). */
  syscalls: number;
  /** Entries written (inserted or overwritten). */
  written: number;
  deleted: number;
  /** Requests dropped because the kernel already held exactly that value (or lacked the key). */
  unchanged: number;
}

interface Waiter {
  resolve: () => void;
  reject: (e: unknown) => void;
}

interface Pending<K, V> {
  key: K;
  /** undefined: delete */
  value: V | undefined;
  waiters: Waiter[];
}

/** Pending entries at which writeAll() flushes: a few batch syscalls' worth. */
const WRITE_CHUNK = 4096;

/** What the kernel holds, as encoded keys and values. */
interface Known {
  readonly size: number;
  has(key: Uint8Array): boolean;
  holds(key: Uint8Array, value: Uint8Array): boolean;
  set(key: Uint8Array, value: Uint8Array): void;
  delete(key: Uint8Array): boolean;
  clear(): void;
  /** Every key and value; views, valid until the next change (a flush). */
  entries(): Generator<[Uint8Array, Uint8Array]>;
}

/** Values up to this size are held inline in a ByteTable; larger ones (Maglev tables) apart. */
const INLINE_VALUE_MAX = 64;

function byteTableKnown(keySize: number, valueSize: number): Known {
  const t = new ByteTable(keySize, valueSize);
  return {
    get size() {
      return t.size;
    },
    has: (k) => t.has(k),
    holds: (k, v) => t.holds(k, v),
    set: (k, v) => t.set(k, v),
    delete: (k) => t.delete(k),
    clear: () => t.clear(),
    *entries() {
      for (const s of t.slots()) yield [t.keyAt(s), t.valueAt(s)];
    },
  };
}

function bufferMapKnown(): Known {
  const m = new Map<string, [Uint8Array, Uint8Array]>();
  const id = (k: Uint8Array) => Buffer.from(k.buffer, k.byteOffset, k.length).toString('hex');
  return {
    get size() {
      return m.size;
    },
    has: (k) => m.has(id(k)),
    holds: (k, v) => {
      const e = m.get(id(k));
      return e !== undefined && Buffer.from(e[1]).equals(v);
    },
    set: (k, v) => void m.set(id(k), [k.slice(), v.slice()]),
    delete: (k) => m.delete(id(k)),
    clear: () => m.clear(),
    *entries() {
      yield* [...m.values()];
    },
  };
}

const asBuffer = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.length);

/**
 * The pinned map itself as what is known: nothing held in the agent, a lookup per written key.
 * For maps whose size follows the cluster's (the ipcache): no memory per entry, and nothing to
 * load at start.
 */
function kernelKnown<K, V>(map: BpfMap<K, V>): Known {
  const val = Buffer.alloc(map.codec.value.size);
  return {
    get size() {
      let n = 0;
      for (const k of map.keyBuffers()) if (k.length > 0) n++;
      return n;
    },
    has: (k) => map.lookupRaw(asBuffer(k), val),
    holds: (k, v) => map.lookupRaw(asBuffer(k), val) && val.equals(v),
    // the kernel holds what was written: nothing to remember
    set: () => undefined,
    delete: () => true,
    clear: () => undefined,
    *entries() {
      for (const k of map.keyBuffers()) if (map.lookupRaw(k, val)) yield [k, val];
    },
  };
}

export interface MirrorOptions {
  /**
   * Where the mirror learns what the kernel holds: `memory` (default) keeps a copy, loaded at
   * start; `kernel` asks the pinned map (a lookup per written key, no memory per entry).
   */
  readonly known?: 'memory' | 'kernel';
}

/**
 * A BPF map plus what the agent knows the kernel holds, with writes coalesced: every set/delete
 * made before the next flush is merged per key (last one wins), compared with the known
 * content, and what differs goes to the kernel as one batch update and one batch delete. A burst
 * of a thousand changes is a couple of syscalls; a change that changes nothing is none. The known
 * content is held encoded (a ByteTable: no object per entry), so a mirror of the cluster's
 * ipcache costs about 80 bytes per entry; entries are decoded when read.
 */
export class MirroredMap<K, V> {
  readonly map: BpfMap<K, V>;
  readonly stats: MapWriteStats = { syscalls: 0, written: 0, deleted: 0, unchanged: 0 };
  readonly #known: Known;
  readonly #inKernel: boolean;
  #pending = new Map<string, Pending<K, V>>();
  readonly #schedule: Schedule;
  readonly #flush = () => this.flush();
  readonly #keyBuf: Buffer;
  readonly #valBuf: Buffer;

  constructor(map: BpfMap<K, V>, schedule: Schedule = nextTick(), opts: MirrorOptions = {}) {
    this.map = map;
    this.#schedule = schedule;
    this.#keyBuf = Buffer.alloc(map.codec.key.size);
    this.#valBuf = Buffer.alloc(map.codec.value.size);
    this.#inKernel = opts.known === 'kernel';
    this.#known = this.#inKernel
      ? kernelKnown(map)
      : map.codec.value.size <= INLINE_VALUE_MAX
        ? byteTableKnown(map.codec.key.size, map.codec.value.size)
        : bufferMapKnown();
  }

  /** The key's bytes, in a buffer reused by the next call. */
  #keyBytes(key: K): Buffer {
    this.map.codec.key.encodeInto(key, this.#keyBuf, 0);
    return this.#keyBuf;
  }

  #id(key: K): string {
    this.map.codec.key.encodeInto(key, this.#keyBuf, 0);
    return this.#keyBuf.toString('hex');
  }

  /** The key's identity (its encoded bytes): two spellings of one address are one key. */
  keyId(key: K): string {
    return this.#id(key);
  }

  #bytes(value: V): Buffer {
    this.map.codec.value.encodeInto(value, this.#valBuf, 0);
    return Buffer.from(this.#valBuf);
  }

  /** Reads the kernel's current content (start-up, restore). Iterates keys: LPM tries have no
   *  batch lookup. */
  load(): void {
    if (this.#inKernel) return;
    this.#known.clear();
    // raw bytes straight into the table: no decoding, no object per entry
    for (const k of this.map.keyBuffers())
      if (this.map.lookupRaw(k, this.#valBuf)) this.#known.set(k, this.#valBuf);
  }

  /**
   * What the kernel holds (as known), decoded one entry at a time. Queueing writes while reading
   * is fine; a flush is not (it changes what is read).
   */
  *entries(): Generator<[K, V]> {
    const { key, value } = this.map.codec;
    for (const [k, v] of this.#known.entries())
      yield [key.decode(asBuffer(k), 0), value.decode(asBuffer(v), 0)];
  }

  get size(): number {
    return this.#known.size;
  }

  has(key: K): boolean {
    return this.#known.has(this.#keyBytes(key));
  }

  /** Whether the kernel (as known) holds exactly this value for the key. */
  holds(key: K, value: V): boolean {
    const v = this.#bytes(value);
    return this.#known.holds(this.#keyBytes(key), v);
  }

  set(key: K, value: V): Promise<void> {
    return this.#queue(key, value);
  }

  delete(key: K): Promise<void> {
    return this.#queue(key, undefined);
  }

  #queue(key: K, value: V | undefined): Promise<void> {
    return new Promise((resolve, reject) => this.#enqueue(key, value, { resolve, reject }));
  }

  #enqueue(key: K, value: V | undefined, waiter: Waiter): void {
    const id = this.#id(key);
    if (value !== undefined) this.#bytes(value); // a bad value fails here, not in the batch
    const p = this.#pending.get(id);
    if (p) {
      p.key = key;
      p.value = value;
      p.waiters.push(waiter);
    } else {
      this.#pending.set(id, { key, value, waiters: [waiter] });
    }
    this.#schedule(this.#flush);
  }

  /**
   * Sets (a value) or deletes (undefined) every entry, under one promise that resolves once the
   * kernel holds them all or rejects with the first failure: no promise per entry, and what is
   * queued is flushed every `chunk` entries, so writing the cluster-sized ipcache whole holds at
   * most a chunk of pending entries.
   */
  writeAll(entries: Iterable<readonly [K, V | undefined]>, chunk = WRITE_CHUNK): Promise<void> {
    return new Promise((resolve, reject) => {
      let left = 1;
      let failure: { err: unknown } | undefined;
      const waiter: Waiter = {
        resolve: () => {
          if (--left > 0) return;
          if (failure === undefined) resolve();
          else reject(failure.err instanceof Error ? failure.err : new Error(String(failure.err)));
        },
        reject: (err) => {
          failure ??= { err };
          waiter.resolve();
        },
      };
      try {
        for (const [k, v] of entries) {
          left++;
          try {
            this.#enqueue(k, v, waiter);
          } catch (err) {
            waiter.reject(err); // this entry's share; the others are still written
          }
          if (this.#pending.size >= chunk) this.flush();
        }
      } catch (err) {
        failure ??= { err }; // the entries themselves failed to iterate
      }
      waiter.resolve();
    });
  }

  /** Applies everything queued now. */
  flush(): void {
    const pending = this.#pending;
    this.#pending = new Map();
    if (pending.size === 0) return;
    const upserts: Array<[string, Pending<K, V>, Buffer]> = [];
    const deletes: Array<[string, Pending<K, V>]> = [];
    for (const [id, p] of pending) {
      if (p.value === undefined) {
        if (this.#known.has(this.#keyBytes(p.key))) deletes.push([id, p]);
        else this.stats.unchanged++;
      } else {
        const bytes = this.#bytes(p.value);
        if (this.#known.holds(this.#keyBytes(p.key), bytes)) this.stats.unchanged++;
        else upserts.push([id, p, bytes]);
      }
    }
    const failed = new Map<string, unknown>();
    if (upserts.length > 0) {
      try {
        this.stats.syscalls++;
        this.map.updateBatch(upserts.map(([, p]) => [p.key, p.value as V] as const));
        for (const [, p, bytes] of upserts) {
          this.#known.set(this.#keyBytes(p.key), bytes);
          this.stats.written++;
        }
      } catch (e) {
        // part may have landed: learn the truth key by key
        for (const [id, p] of upserts) {
          this.#resync(p.key);
          failed.set(id, e);
        }
      }
    }
    if (deletes.length > 0) {
      try {
        this.stats.syscalls++;
        this.map.deleteBatch(deletes.map(([, p]) => p.key));
        for (const [, p] of deletes) {
          this.#known.delete(this.#keyBytes(p.key));
          this.stats.deleted++;
        }
      } catch {
        // a key someone else removed stops the batch (ENOENT): go one by one
        for (const [id, p] of deletes) {
          try {
            this.stats.syscalls++;
            if (this.map.delete(p.key)) this.stats.deleted++;
            this.#known.delete(this.#keyBytes(p.key));
          } catch (e) {
            this.#resync(p.key);
            if (this.#known.has(this.#keyBytes(p.key))) failed.set(id, e);
          }
        }
      }
    }
    for (const [id, p] of pending) {
      const err = failed.get(id);
      for (const w of p.waiters) {
        if (err === undefined) w.resolve();
        else w.reject(err);
      }
    }
  }

  #resync(key: K): void {
    const v = this.map.lookup(key);
    if (v === undefined) this.#known.delete(this.#keyBytes(key));
    else this.#known.set(this.#keyBytes(key), this.#bytes(v));
  }
}
