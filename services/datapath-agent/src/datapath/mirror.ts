import type { BpfMap } from '@dyad/libbpf-ts';
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

interface Pending<K, V> {
  key: K;
  /** undefined: delete */
  value: V | undefined;
  waiters: Array<{ resolve: () => void; reject: (e: unknown) => void }>;
}

/**
 * A BPF map plus what the agent knows the kernel holds, with writes coalesced: every set/delete
 * made before the next flush is merged per key (last one wins), compared with the known
 * content, and what differs goes to the kernel as one batch update and one batch delete. A burst
 * of a thousand changes is a couple of syscalls; a change that changes nothing is none.
 */
export class MirroredMap<K, V> {
  readonly map: BpfMap<K, V>;
  readonly stats: MapWriteStats = { syscalls: 0, written: 0, deleted: 0, unchanged: 0 };
  readonly #known = new Map<string, { key: K; bytes: Buffer; value: V }>();
  #pending = new Map<string, Pending<K, V>>();
  readonly #schedule: Schedule;
  readonly #flush = () => this.flush();
  readonly #keyBuf: Buffer;
  readonly #valBuf: Buffer;

  constructor(map: BpfMap<K, V>, schedule: Schedule = nextTick()) {
    this.map = map;
    this.#schedule = schedule;
    this.#keyBuf = Buffer.alloc(map.codec.key.size);
    this.#valBuf = Buffer.alloc(map.codec.value.size);
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
    this.#known.clear();
    for (const [key, value] of this.map.entries()) {
      this.#known.set(this.#id(key), { key, value, bytes: this.#bytes(value) });
    }
  }

  entries(): Array<[K, V]> {
    return [...this.#known.values()].map((e) => [e.key, e.value]);
  }

  get size(): number {
    return this.#known.size;
  }

  get(key: K): V | undefined {
    return this.#known.get(this.#id(key))?.value;
  }

  has(key: K): boolean {
    return this.#known.has(this.#id(key));
  }

  /** Whether the kernel (as known) holds exactly this value for the key. */
  holds(key: K, value: V): boolean {
    const e = this.#known.get(this.#id(key));
    return e !== undefined && e.bytes.equals(this.#bytes(value));
  }

  set(key: K, value: V): Promise<void> {
    return this.#queue(key, value);
  }

  delete(key: K): Promise<void> {
    return this.#queue(key, undefined);
  }

  #queue(key: K, value: V | undefined): Promise<void> {
    const id = this.#id(key);
    if (value !== undefined) this.#bytes(value); // a bad value fails here, not in the batch
    return new Promise((resolve, reject) => {
      const p = this.#pending.get(id);
      if (p) {
        p.key = key;
        p.value = value;
        p.waiters.push({ resolve, reject });
      } else {
        this.#pending.set(id, { key, value, waiters: [{ resolve, reject }] });
      }
      this.#schedule(this.#flush);
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
      const known = this.#known.get(id);
      if (p.value === undefined) {
        if (known) deletes.push([id, p]);
        else this.stats.unchanged++;
      } else {
        const bytes = this.#bytes(p.value);
        if (known?.bytes.equals(bytes)) this.stats.unchanged++;
        else upserts.push([id, p, bytes]);
      }
    }
    const failed = new Map<string, unknown>();
    if (upserts.length > 0) {
      try {
        this.stats.syscalls++;
        this.map.updateBatch(upserts.map(([, p]) => [p.key, p.value as V] as const));
        for (const [id, p, bytes] of upserts) {
          this.#known.set(id, { key: p.key, value: p.value as V, bytes });
          this.stats.written++;
        }
      } catch (e) {
        // part may have landed: learn the truth key by key
        for (const [id, p] of upserts) {
          this.#resync(id, p.key);
          failed.set(id, e);
        }
      }
    }
    if (deletes.length > 0) {
      try {
        this.stats.syscalls++;
        this.map.deleteBatch(deletes.map(([, p]) => p.key));
        for (const [id] of deletes) {
          this.#known.delete(id);
          this.stats.deleted++;
        }
      } catch {
        // a key someone else removed stops the batch (ENOENT): go one by one
        for (const [id, p] of deletes) {
          try {
            this.stats.syscalls++;
            if (this.map.delete(p.key)) this.stats.deleted++;
            this.#known.delete(id);
          } catch (e) {
            this.#resync(id, p.key);
            if (this.#known.has(id)) failed.set(id, e);
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

  #resync(id: string, key: K): void {
    const v = this.map.lookup(key);
    if (v === undefined) this.#known.delete(id);
    else this.#known.set(id, { key, value: v, bytes: this.#bytes(v) });
  }
}
