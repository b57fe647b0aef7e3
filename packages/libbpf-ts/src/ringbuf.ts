import { ClosedError, LibbpfError } from './errors.ts';
import type { LibbpfBindings, Ptr } from './ffi.ts';

export interface RingBufferOptions {
  /** How long one epoll_wait on the worker thread may block; bounds close() latency. */
  readonly pollTimeoutMs?: number;
  /** Decoded events kept while nobody reads; beyond that the oldest are dropped and counted. */
  readonly maxQueued?: number;
  /**
   * Records taken per turn of the event loop. A producer as fast as the reader would otherwise
   * keep one read of the ring going for ever.
   */
  readonly budget?: number;
}

// The kernel's ring buffer layout (kernel/bpf/ringbuf.c, uapi linux/bpf.h): a consumer page the
// reader writes, a producer page, then the data pages mapped twice in a row, so a record that
// wraps around the end is still contiguous. Each record: u32 len (with the two bits below), u32
// page offset, then the sample, padded to 8 bytes.
const BUSY_BIT = 0x8000_0000;
const DISCARD_BIT = 0x4000_0000;
const LEN_MASK = 0x3fff_ffff;
const HDR_SIZE = 8;
const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const EPOLL_CLOEXEC = 0o2000000;
const EPOLL_CTL_ADD = 1;
const EPOLLIN = 1;

/**
 * Consumes a BPF ring buffer (BPF_MAP_TYPE_RINGBUF) as an async iterator. The ring is mapped
 * into this process and read from JavaScript as libbpf's ring_buffer__consume reads it (acquire
 * loads of the producer position and each record's length, a release store of the consumer
 * position: Atomics, sequentially consistent), so taking a record costs no native call and no
 * copy; only waiting does: epoll_wait runs on a libuv worker thread, and the records are read on
 * the main thread, so the decoder never runs off the JavaScript thread and the event loop never
 * blocks.
 */
export class RingBufferReader<T> implements AsyncIterableIterator<T>, AsyncDisposable {
  readonly #lib: LibbpfBindings;
  readonly #decode: (record: Buffer) => T;
  readonly #timeout: number;
  readonly #maxQueued: number;
  readonly #budget: number;
  readonly #size: number;
  readonly #pageSize: number;
  readonly #consumerPage: Ptr;
  readonly #producerPages: Ptr;
  /** consumer_pos (u64), the one word the reader writes. */
  readonly #consumerPos: BigUint64Array;
  /** producer_pos (u64). */
  readonly #producerPos: BigUint64Array;
  /** The data pages, twice: bytes for the decoder, words for the acquire load of a length. */
  readonly #data: Buffer;
  readonly #words: Uint32Array;
  readonly #epfd: number;
  #more: NodeJS.Immediate | undefined;
  readonly #events = Buffer.alloc(16 * 4);
  readonly #queue: T[] = [];
  readonly #waiters: Array<{
    resolve: (r: IteratorResult<T>) => void;
    reject: (e: unknown) => void;
  }> = [];
  #error: Error | undefined = undefined;
  #closed = false;
  #freed = false;
  #inflight: Promise<void> | undefined;
  #dropped = 0;
  #received = 0;

  /** `size`: the map's max_entries (the data size, a power of two). */
  constructor(
    lib: LibbpfBindings,
    mapFd: number,
    size: number,
    decode: (record: Buffer) => T,
    opts: RingBufferOptions = {},
  ) {
    this.#lib = lib;
    this.#decode = decode;
    this.#timeout = opts.pollTimeoutMs ?? 100;
    this.#maxQueued = opts.maxQueued ?? 65536;
    this.#budget = opts.budget ?? 4096;
    this.#size = size;
    this.#pageSize = lib.pageSize();
    const detail = `map fd ${mapFd}`;
    const consumer = lib.mmap(this.#pageSize, PROT_READ | PROT_WRITE, MAP_SHARED, mapFd, 0);
    if (consumer === null) throw new LibbpfError('mmap consumer page', lib.errno(), { detail });
    const producer = lib.mmap(
      this.#pageSize + 2 * size,
      PROT_READ,
      MAP_SHARED,
      mapFd,
      this.#pageSize,
    );
    if (producer === null) {
      const errno = lib.errno();
      lib.munmap(consumer, this.#pageSize);
      throw new LibbpfError('mmap producer pages', errno, { detail });
    }
    const epfd = lib.epollCreate1(EPOLL_CLOEXEC);
    const event = Buffer.alloc(12);
    event.writeUInt32LE(EPOLLIN, 0);
    if (epfd < 0 || lib.epollCtl(epfd, EPOLL_CTL_ADD, mapFd, event) < 0) {
      const errno = lib.errno();
      if (epfd >= 0) lib.close(epfd);
      lib.munmap(producer, this.#pageSize + 2 * size);
      lib.munmap(consumer, this.#pageSize);
      throw new LibbpfError('epoll on the ring buffer', errno, { detail });
    }
    this.#consumerPage = consumer;
    this.#producerPages = producer;
    this.#epfd = epfd;
    this.#consumerPos = new BigUint64Array(lib.view(consumer, 8));
    this.#producerPos = new BigUint64Array(lib.view(producer, 8));
    const data = lib.view(producer + BigInt(this.#pageSize), 2 * size);
    this.#data = Buffer.from(data);
    this.#words = new Uint32Array(data);
    this.#consume();
    this.#poll();
  }

  /** Events discarded because the queue was full. */
  get dropped(): number {
    return this.#dropped;
  }

  get received(): number {
    return this.#received;
  }

  #onSample(at: number, size: number): void {
    this.#received++;
    let value: T;
    try {
      value = this.#decode(this.#data.subarray(at, at + size));
    } catch (e) {
      this.#fail(e);
      return;
    }
    const w = this.#waiters.shift();
    if (w) {
      w.resolve({ value, done: false });
      return;
    }
    if (this.#queue.length >= this.#maxQueued) {
      this.#queue.shift();
      this.#dropped++;
    }
    this.#queue.push(value);
  }

  #fail(e: unknown): void {
    const err = e instanceof Error ? e : new Error('ring buffer failed', { cause: e });
    this.#error = err;
    for (const w of this.#waiters.splice(0)) w.reject(err);
  }

  /** Reads what the ring holds, up to the budget; schedules the rest for the next turn. */
  #consume(): void {
    if (this.#freed || this.#error !== undefined) return;
    // Positions only grow; as doubles they stay exact up to 2^53 bytes written.
    let cons = Number(Atomics.load(this.#consumerPos, 0));
    let taken = 0;
    for (;;) {
      const prod = Number(Atomics.load(this.#producerPos, 0));
      let progressed = false;
      while (cons < prod) {
        const at = cons % this.#size;
        const len = Atomics.load(this.#words, at >>> 2);
        if ((len & BUSY_BIT) !== 0) break; // reserved, not committed yet
        progressed = true;
        const size = len & LEN_MASK;
        cons += (size + HDR_SIZE + 7) & ~7;
        if ((len & DISCARD_BIT) === 0) {
          this.#onSample(at + HDR_SIZE, size);
          if (++taken >= this.#budget) {
            Atomics.store(this.#consumerPos, 0, BigInt(cons));
            // more may be waiting: read on after the event loop has had its turn
            this.#more ??= setImmediate(() => {
              this.#more = undefined;
              this.#consume();
            });
            return;
          }
        }
      }
      Atomics.store(this.#consumerPos, 0, BigInt(cons));
      if (!progressed) return;
    }
  }

  #poll(): void {
    if (this.#closed) return;
    this.#inflight = new Promise<void>((resolve) => {
      this.#lib.epollWaitAsync(this.#epfd, this.#events, 4, this.#timeout, (err, n) => {
        resolve();
        if (this.#closed) return;
        if (err) {
          this.#fail(err);
          return;
        }
        if (n > 0) this.#consume();
        this.#poll();
      });
    });
  }

  next(): Promise<IteratorResult<T>> {
    const value = this.#queue.shift();
    if (value !== undefined) return Promise.resolve({ value, done: false });
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (this.#closed) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Stops the iterator (the for-await loop ends). */
  async return(): Promise<IteratorResult<T>> {
    await this.close();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Waits for the worker's epoll_wait to return, then unmaps the ring and closes the epoll fd. */
  async close(): Promise<void> {
    if (this.#closed) {
      await this.#inflight;
      return;
    }
    this.#closed = true;
    if (this.#more !== undefined) clearImmediate(this.#more);
    this.#more = undefined;
    for (const w of this.#waiters.splice(0)) w.resolve({ value: undefined, done: true });
    await this.#inflight;
    if (!this.#freed) {
      this.#freed = true;
      this.#lib.close(this.#epfd);
      this.#lib.munmap(this.#producerPages, this.#pageSize + 2 * this.#size);
      this.#lib.munmap(this.#consumerPage, this.#pageSize);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Drains what is already in the ring synchronously (tests, shutdown). */
  drainNow(): T[] {
    if (this.#freed) throw new ClosedError('ring buffer');
    this.#consume();
    return this.#queue.splice(0);
  }
}
