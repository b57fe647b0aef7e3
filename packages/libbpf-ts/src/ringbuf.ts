import { ClosedError, LibbpfError } from './errors.ts';
import type { LibbpfBindings, Ptr } from './ffi.ts';

export interface RingBufferOptions {
  /** How long one epoll_wait on the worker thread may block; bounds close() latency. */
  readonly pollTimeoutMs?: number;
  /** Decoded events kept while nobody reads; beyond that the oldest are dropped and counted. */
  readonly maxQueued?: number;
  /**
   * Records taken per turn of the event loop. A producer as fast as the reader would otherwise
   * keep one ring_buffer__consume call (which reads until the ring is empty) going for ever.
   */
  readonly budget?: number;
}

/** What the sample callback returns to make ring_buffer__consume stop after this record. */
const BUDGET_SPENT = -11; // -EAGAIN

/**
 * Consumes a BPF ring buffer as an async iterator. epoll_wait runs on a libuv worker thread;
 * when it reports data, ring_buffer__consume runs on the main thread, so the sample callback
 * (and the decoder) never run off the JavaScript thread and the event loop never blocks.
 */
export class RingBufferReader<T> implements AsyncIterableIterator<T>, AsyncDisposable {
  readonly #lib: LibbpfBindings;
  readonly #decode: (record: Buffer) => T;
  readonly #timeout: number;
  readonly #maxQueued: number;
  readonly #budget: number;
  #inTurn = 0;
  #more: NodeJS.Immediate | undefined;
  readonly #cb: Ptr;
  readonly #rb: Ptr;
  readonly #epfd: number;
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

  constructor(
    lib: LibbpfBindings,
    mapFd: number,
    decode: (record: Buffer) => T,
    opts: RingBufferOptions = {},
  ) {
    this.#lib = lib;
    this.#decode = decode;
    this.#timeout = opts.pollTimeoutMs ?? 100;
    this.#maxQueued = opts.maxQueued ?? 65536;
    this.#budget = opts.budget ?? 4096;
    this.#cb = lib.registerSampleCallback((_ctx, data, size) => {
      this.#onSample(data, Number(size));
      return ++this.#inTurn >= this.#budget ? BUDGET_SPENT : 0;
    });
    const rb = lib.ringBufferNew(mapFd, this.#cb, null, null);
    if (rb === null) {
      const errno = lib.errno();
      lib.unregisterCallback(this.#cb);
      throw new LibbpfError('ring_buffer__new', errno, { detail: `map fd ${mapFd}` });
    }
    this.#rb = rb;
    this.#epfd = lib.ringBufferEpollFd(rb);
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

  #onSample(data: Ptr, size: number): void {
    this.#received++;
    let value: T;
    try {
      value = this.#decode(this.#lib.copyOut(data, size));
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

  #consume(): void {
    this.#inTurn = 0;
    const rc = this.#lib.ringBufferConsume(this.#rb);
    if (rc === BUDGET_SPENT) {
      // more may be waiting: read on after the event loop has had its turn
      this.#more ??= setImmediate(() => {
        this.#more = undefined;
        if (!this.#freed) this.#consume();
      });
    } else if (rc < 0) this.#fail(new LibbpfError('ring_buffer__consume', -rc));
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

  /** Waits for the worker's epoll_wait to return, then frees libbpf's ring buffer. */
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
      this.#lib.ringBufferFree(this.#rb);
      this.#lib.unregisterCallback(this.#cb);
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
