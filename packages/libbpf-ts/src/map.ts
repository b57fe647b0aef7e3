import { ClosedError, CodecError, LibbpfError } from './errors.ts';
import type { MapCodec } from './codec.ts';
import type { LibbpfBindings, Ptr } from './ffi.ts';
import { isPerCpu, MapType, updateFlag } from './map-types.ts';
import type { MapInfo, UpdateMode } from './map-types.ts';

const ENOENT = 2;
const BATCH_OPTS_SIZE = 24;

/** Shared liveness of handles that borrow a file descriptor from their owner. */
export interface Liveness {
  open: boolean;
  readonly what: string;
}

export interface BpfMapOptions {
  /** Close the fd when this map is closed (pinned or created maps); object maps borrow it. */
  readonly ownsFd: boolean;
  /** The owner's liveness, for borrowed fds. */
  readonly owner?: Liveness;
  /** libbpf's map handle, when the map came from an object: single-element calls then go through
   *  bpf_map__*_elem, which check key and value sizes in libbpf itself. */
  readonly mapPtr?: Ptr;
}

function batchOpts(elemFlags: bigint): Buffer {
  const b = Buffer.alloc(BATCH_OPTS_SIZE);
  b.writeBigUInt64LE(BigInt(BATCH_OPTS_SIZE), 0);
  b.writeBigUInt64LE(elemFlags, 8);
  return b;
}

/**
 * A BPF map seen through a codec. Single calls allocate nothing beyond the key and value
 * buffers, which are reused; batch calls pack every entry into one contiguous buffer so one
 * syscall moves them all.
 */
export class BpfMap<K, V> implements Disposable {
  readonly info: MapInfo;
  readonly codec: MapCodec<K, V>;
  readonly perCpu: boolean;
  readonly #lib: LibbpfBindings;
  readonly #opts: BpfMapOptions;
  #fd: number;
  readonly #keyBuf: Buffer;
  readonly #valBuf: Buffer;
  /** Bytes of one value in syscalls: per-CPU maps carry one 8-aligned slot per possible CPU. */
  readonly #valueStride: number;
  readonly #valueBytes: number;
  readonly #ncpus: number;

  constructor(
    lib: LibbpfBindings,
    fd: number,
    info: MapInfo,
    codec: MapCodec<K, V>,
    opts: BpfMapOptions,
  ) {
    if (codec.key.size !== info.keySize) {
      throw new CodecError(
        `map ${info.name}: key codec is ${codec.key.size} bytes, map key is ${info.keySize}`,
      );
    }
    if (info.type !== MapType.RINGBUF && codec.value.size !== info.valueSize) {
      throw new CodecError(
        `map ${info.name}: value codec is ${codec.value.size} bytes, map value is ${info.valueSize}`,
      );
    }
    this.#lib = lib;
    this.#fd = fd;
    this.info = info;
    this.codec = codec;
    this.#opts = opts;
    this.perCpu = isPerCpu(info.type);
    this.#ncpus = this.perCpu ? lib.numPossibleCpus() : 1;
    this.#valueStride = this.perCpu ? Math.ceil(info.valueSize / 8) * 8 : info.valueSize;
    this.#valueBytes = this.#valueStride * this.#ncpus;
    this.#keyBuf = Buffer.alloc(info.keySize);
    this.#valBuf = Buffer.alloc(this.#valueBytes);
  }

  get name(): string {
    return this.info.name;
  }

  get fd(): number {
    this.#check();
    return this.#fd;
  }

  #check(): void {
    if (this.#fd < 0) throw new ClosedError(`map ${this.info.name}`);
    if (this.#opts.owner && !this.#opts.owner.open) throw new ClosedError(this.#opts.owner.what);
  }

  #fail(op: string, rc: number, detail?: string): never {
    throw new LibbpfError(
      op,
      -rc,
      detail === undefined
        ? { detail: `map ${this.info.name}` }
        : { detail: `map ${this.info.name}: ${detail}` },
    );
  }

  #encodeKey(key: K): Buffer {
    this.codec.key.encodeInto(key, this.#keyBuf, 0);
    return this.#keyBuf;
  }

  /** Raw single lookup; `value` must be the syscall value size. Returns false when absent. */
  lookupRaw(key: Buffer, value: Buffer): boolean {
    this.#check();
    const ptr = this.#opts.mapPtr;
    const rc =
      ptr !== undefined
        ? this.#lib.mapLookupElemChecked(ptr, key, key.length, value, value.length, 0n)
        : this.#sized(key, value) || this.#lib.mapLookupElem(this.#fd, key, value);
    if (rc === -ENOENT) return false;
    if (rc < 0) this.#fail('bpf_map_lookup_elem', rc);
    return true;
  }

  updateRaw(key: Buffer, value: Buffer, mode: UpdateMode = 'any'): void {
    this.#check();
    const ptr = this.#opts.mapPtr;
    const rc =
      ptr !== undefined
        ? this.#lib.mapUpdateElemChecked(
            ptr,
            key,
            key.length,
            value,
            value.length,
            updateFlag(mode),
          )
        : this.#sized(key, value) ||
          this.#lib.mapUpdateElem(this.#fd, key, value, updateFlag(mode));
    if (rc < 0) this.#fail('bpf_map_update_elem', rc);
  }

  deleteRaw(key: Buffer): boolean {
    this.#check();
    const ptr = this.#opts.mapPtr;
    const rc =
      ptr !== undefined
        ? this.#lib.mapDeleteElemChecked(ptr, key, key.length, 0n)
        : this.#sized(key, undefined) || this.#lib.mapDeleteElem(this.#fd, key);
    if (rc === -ENOENT) return false;
    if (rc < 0) this.#fail('bpf_map_delete_elem', rc);
    return true;
  }

  // For fd-only maps the kernel reads key_size/value_size bytes from whatever pointer it gets,
  // so a short buffer would read or write past it: refuse here the way libbpf does (EINVAL).
  // Returns 0 so call sites can chain the syscall with `||`.
  #sized(key: Buffer, value: Buffer | undefined): number {
    const EINVAL = 22;
    if (key.length !== this.info.keySize) {
      throw new LibbpfError('bpf_map_elem', EINVAL, {
        detail: `map ${this.info.name}: key is ${key.length} bytes, map wants ${this.info.keySize}`,
      });
    }
    if (value !== undefined && value.length !== this.#valueBytes) {
      throw new LibbpfError('bpf_map_elem', EINVAL, {
        detail: `map ${this.info.name}: value is ${value.length} bytes, map wants ${this.#valueBytes}`,
      });
    }
    return 0;
  }

  lookup(key: K): V | undefined {
    this.#noPerCpu('lookup');
    if (!this.lookupRaw(this.#encodeKey(key), this.#valBuf)) return undefined;
    return this.codec.value.decode(this.#valBuf, 0);
  }

  /** One value per possible CPU. */
  lookupPerCpu(key: K): V[] | undefined {
    if (!this.perCpu) throw new CodecError(`map ${this.info.name} is not per-CPU`);
    if (!this.lookupRaw(this.#encodeKey(key), this.#valBuf)) return undefined;
    return this.#decodePerCpu(this.#valBuf, 0);
  }

  update(key: K, value: V, mode: UpdateMode = 'any'): void {
    this.#noPerCpu('update');
    this.codec.value.encodeInto(value, this.#valBuf, 0);
    this.updateRaw(this.#encodeKey(key), this.#valBuf, mode);
  }

  /** Writes `values[i]` to CPU i; CPUs without a value get zeroes. */
  updatePerCpu(key: K, values: readonly V[], mode: UpdateMode = 'any'): void {
    if (!this.perCpu) throw new CodecError(`map ${this.info.name} is not per-CPU`);
    this.#valBuf.fill(0);
    values.forEach((v, i) => {
      if (i < this.#ncpus) this.codec.value.encodeInto(v, this.#valBuf, i * this.#valueStride);
    });
    this.updateRaw(this.#encodeKey(key), this.#valBuf, mode);
  }

  delete(key: K): boolean {
    return this.deleteRaw(this.#encodeKey(key));
  }

  #noPerCpu(op: string): void {
    if (this.perCpu) throw new CodecError(`map ${this.info.name} is per-CPU: use ${op}PerCpu`);
  }

  #decodePerCpu(buf: Buffer, base: number): V[] {
    const out: V[] = [];
    for (let i = 0; i < this.#ncpus; i++)
      out.push(this.codec.value.decode(buf, base + i * this.#valueStride));
    return out;
  }

  /** Keys in kernel order. Entries removed meanwhile may restart the walk, as with any
   *  get_next_key iteration. */
  *keyBuffers(): Generator<Buffer> {
    this.#check();
    let cur: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.info.keySize);
      const rc = this.#lib.mapGetNextKey(this.#fd, cur, next);
      if (rc === -ENOENT) return;
      if (rc < 0) this.#fail('bpf_map_get_next_key', rc);
      yield next;
      cur = next;
    }
  }

  *keys(): Generator<K> {
    for (const k of this.keyBuffers()) yield this.codec.key.decode(k, 0);
  }

  *entries(): Generator<[K, V]> {
    this.#noPerCpu('entries');
    const val = Buffer.alloc(this.#valueBytes);
    for (const k of this.keyBuffers()) {
      if (this.lookupRaw(k, val))
        yield [this.codec.key.decode(k, 0), this.codec.value.decode(val, 0)];
    }
  }

  *entriesPerCpu(): Generator<[K, V[]]> {
    const val = Buffer.alloc(this.#valueBytes);
    for (const k of this.keyBuffers()) {
      if (this.lookupRaw(k, val)) yield [this.codec.key.decode(k, 0), this.#decodePerCpu(val, 0)];
    }
  }

  /** Packs entries for updateBatchPacked; exposed so callers can encode once and write often. */
  packBatch(entries: ReadonlyArray<readonly [K, V]>): {
    keys: Buffer;
    values: Buffer;
    count: number;
  } {
    this.#noPerCpu('packBatch');
    const n = entries.length;
    const ks = this.info.keySize;
    const vs = this.#valueBytes;
    const keys = Buffer.allocUnsafe(n * ks);
    const values = Buffer.allocUnsafe(n * vs);
    for (let i = 0; i < n; i++) {
      const e = entries[i] as readonly [K, V];
      this.codec.key.encodeInto(e[0], keys, i * ks);
      this.codec.value.encodeInto(e[1], values, i * vs);
    }
    return { keys, values, count: n };
  }

  /** One BPF_MAP_UPDATE_BATCH over pre-packed buffers (insert or overwrite: the kernel takes no
   *  NOEXIST/EXIST for batches). On failure the error says how many entries were applied. */
  updateBatchPacked(packed: { keys: Buffer; values: Buffer; count: number }): void {
    this.#check();
    if (packed.count === 0) return;
    if (
      packed.keys.length < packed.count * this.info.keySize ||
      packed.values.length < packed.count * this.#valueBytes
    ) {
      throw new CodecError(
        `map ${this.info.name}: batch buffers too small for ${packed.count} entries`,
      );
    }
    const count = [packed.count];
    const rc = this.#lib.mapUpdateBatch(this.#fd, packed.keys, packed.values, count, batchOpts(0n));
    if (rc < 0)
      this.#fail('bpf_map_update_batch', rc, `${count[0] ?? 0} of ${packed.count} applied`);
  }

  updateBatch(entries: ReadonlyArray<readonly [K, V]>): void {
    this.updateBatchPacked(this.packBatch(entries));
  }

  /** One BPF_MAP_UPDATE_BATCH on a libuv worker thread: the event loop keeps running while the
   *  kernel inserts. The buffers must not be touched until the promise settles. */
  updateBatchPackedAsync(packed: { keys: Buffer; values: Buffer; count: number }): Promise<void> {
    this.#check();
    if (packed.count === 0) return Promise.resolve();
    if (
      packed.keys.length < packed.count * this.info.keySize ||
      packed.values.length < packed.count * this.#valueBytes
    ) {
      throw new CodecError(
        `map ${this.info.name}: batch buffers too small for ${packed.count} entries`,
      );
    }
    const count = [packed.count];
    return new Promise((resolve, reject) => {
      this.#lib.mapUpdateBatchAsync(
        this.#fd,
        packed.keys,
        packed.values,
        count,
        batchOpts(0n),
        (err, rc) => {
          if (err)
            reject(err instanceof Error ? err : new Error('batch update failed', { cause: err }));
          else if (rc < 0) {
            reject(
              new LibbpfError('bpf_map_update_batch', -rc, {
                detail: `map ${this.info.name}: ${count[0] ?? 0} of ${packed.count} applied`,
              }),
            );
          } else resolve();
        },
      );
    });
  }

  /** Batch update in chunks of `chunk` entries, encoding the next chunk while the kernel applies
   *  the previous one on a worker thread. Same syscalls as updateBatch per chunk; the event loop
   *  never blocks on the kernel. Chunks apply in order; on failure later chunks are not sent. */
  async updateBatchAsync(entries: ReadonlyArray<readonly [K, V]>, chunk = 8192): Promise<void> {
    let inflight: Promise<void> | undefined;
    for (let off = 0; off < entries.length; off += chunk) {
      const packed = this.packBatch(entries.slice(off, off + chunk));
      if (inflight) await inflight;
      inflight = this.updateBatchPackedAsync(packed);
    }
    await inflight;
  }

  /** Deletes keys in one call; returns how many were deleted. Absent keys stop the kernel with
   *  ENOENT, reported as an error naming the count done. */
  deleteBatch(keys: readonly K[]): number {
    this.#check();
    if (keys.length === 0) return 0;
    const ks = this.info.keySize;
    const buf = Buffer.allocUnsafe(keys.length * ks);
    keys.forEach((k, i) => this.codec.key.encodeInto(k, buf, i * ks));
    const count = [keys.length];
    const rc = this.#lib.mapDeleteBatch(this.#fd, buf, count, batchOpts(0n));
    if (rc < 0)
      this.#fail('bpf_map_delete_batch', rc, `${count[0] ?? 0} of ${keys.length} deleted`);
    return count[0] ?? 0;
  }

  /** Reads the whole map with BPF_MAP_LOOKUP_BATCH, `chunk` entries per syscall. Hash, array
   *  and their per-CPU/LRU variants support it; LPM tries do not (EINVAL from the kernel). */
  lookupBatch(chunk = 4096): Array<[K, V]> {
    const out: Array<[K, V]> = [];
    this.#lookupBatchRaw(chunk, (keys, values, n) => {
      for (let i = 0; i < n; i++) {
        out.push([
          this.codec.key.decode(keys, i * this.info.keySize),
          this.codec.value.decode(values, i * this.#valueBytes),
        ]);
      }
    });
    return out;
  }

  lookupBatchPerCpu(chunk = 4096): Array<[K, V[]]> {
    const out: Array<[K, V[]]> = [];
    this.#lookupBatchRaw(chunk, (keys, values, n) => {
      for (let i = 0; i < n; i++) {
        out.push([
          this.codec.key.decode(keys, i * this.info.keySize),
          this.#decodePerCpu(values, i * this.#valueBytes),
        ]);
      }
    });
    return out;
  }

  #lookupBatchRaw(chunk: number, sink: (keys: Buffer, values: Buffer, n: number) => void): void {
    this.#check();
    const tokenSize = Math.max(this.info.keySize, 8);
    let inBatch: Buffer | null = null;
    let outBatch: Buffer = Buffer.alloc(tokenSize);
    const keys = Buffer.alloc(chunk * this.info.keySize);
    const values = Buffer.alloc(chunk * this.#valueBytes);
    const opts = batchOpts(0n);
    for (;;) {
      const count = [chunk];
      const rc = this.#lib.mapLookupBatch(this.#fd, inBatch, outBatch, keys, values, count, opts);
      if (rc < 0 && rc !== -ENOENT) this.#fail('bpf_map_lookup_batch', rc);
      sink(keys, values, count[0] ?? 0);
      if (rc === -ENOENT) return;
      const spare: Buffer = inBatch ?? Buffer.alloc(tokenSize);
      inBatch = outBatch;
      outBatch = spare;
    }
  }

  close(): void {
    if (this.#fd < 0) return;
    if (this.#opts.ownsFd) this.#lib.close(this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
