/**
 * A coalescing, retrying publish queue keyed by subject. The stream keeps only the last value
 * per subject, so when an object changes faster than NATS acknowledges, only its newest state
 * needs to go out; and when NATS is away, every subject waits for it and goes out when it is back.
 * Per subject at most one publish is in flight, so a newer state never loses to an older one.
 */
export interface PublishJob {
  readonly subject: string;
  /** Sends the job; resolves when JetStream acknowledged it. */
  readonly send: () => Promise<void>;
}

export interface PublisherOptions {
  readonly concurrency: number;
  readonly minBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly onError: (subject: string, err: unknown, attempt: number) => void;
  readonly onPublished?: (subject: string) => void;
}

export class CoalescingPublisher {
  readonly #opts: PublisherOptions;
  readonly #pending = new Map<string, PublishJob>();
  readonly #inFlight = new Set<string>();
  #idleWaiters: Array<() => void> = [];
  #backoffUntil = 0;
  #attempt = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(opts: PublisherOptions) {
    this.#opts = opts;
  }

  /** Replaces whatever was queued for the job's subject. */
  enqueue(job: PublishJob): void {
    if (this.#closed) return;
    this.#pending.set(job.subject, job);
    this.#pump();
  }

  get backlog(): number {
    return this.#pending.size + this.#inFlight.size;
  }

  /** Resolves once nothing is queued or in flight. */
  idle(): Promise<void> {
    if (this.backlog === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#pending.clear();
  }

  #pump(): void {
    if (this.#closed) return;
    const wait = this.#backoffUntil - Date.now();
    if (wait > 0) {
      this.#timer ??= setTimeout(() => {
        this.#timer = undefined;
        this.#pump();
      }, wait);
      return;
    }
    for (const [subject, job] of this.#pending) {
      if (this.#inFlight.size >= this.#opts.concurrency) break;
      if (this.#inFlight.has(subject)) continue;
      this.#pending.delete(subject);
      this.#inFlight.add(subject);
      void this.#run(job);
    }
    this.#maybeIdle();
  }

  async #run(job: PublishJob): Promise<void> {
    try {
      await job.send();
      this.#attempt = 0;
      this.#opts.onPublished?.(job.subject);
    } catch (err) {
      // A failure is almost always NATS being away: back off the whole queue, not one subject.
      this.#attempt++;
      this.#opts.onError(job.subject, err, this.#attempt);
      if (!this.#pending.has(job.subject)) this.#pending.set(job.subject, job);
      const delay = Math.min(this.#opts.maxBackoffMs, this.#opts.minBackoffMs * 2 ** Math.min(this.#attempt - 1, 16));
      this.#backoffUntil = Date.now() + delay * (0.5 + Math.random() / 2);
    } finally {
      this.#inFlight.delete(job.subject);
      this.#pump();
    }
  }

  #maybeIdle(): void {
    if (this.backlog !== 0) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }
}
