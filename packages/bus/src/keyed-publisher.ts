import { context } from '@opentelemetry/api';
import type { MessageContract } from '@dyad/contracts';
import { backoffDelay } from './backoff.ts';
import type { BackoffPolicy } from './backoff.ts';
import type { Bus } from './connect.ts';
import { NotConnectedError } from './errors.ts';
import type { InputOf, JsPublishOptions } from './publish.ts';

/**
 * A coalescing, retrying publish queue keyed by subject, for last-value streams. The stream keeps
 * only the last value per subject, so when a thing changes faster than NATS acknowledges, only its
 * newest state needs to go out; and when NATS is away, every subject waits for it and goes out
 * when it is back. Per subject at most one publish is in flight, so a newer state never loses to
 * an older one. The one such queue of Dyad: kube-bridge's objects, an agent's records.
 */
export interface PublishJob {
  readonly subject: string;
  /** Sends the job; resolves when JetStream acknowledged it. */
  readonly send: () => Promise<unknown>;
}

export interface PublisherOptions {
  readonly concurrency: number;
  /** The wait after failures (a failure is almost always NATS being away). */
  readonly backoff: BackoffPolicy;
  readonly onError: (subject: string, err: unknown, attempt: number) => void;
  readonly onPublished?: (subject: string) => void;
}

/**
 * A job that publishes one message through whatever connection `bus` returns now (undefined
 * before the first connect): for a publisher created before NATS is up. The publish runs in the
 * context the job was made in, so the message's `traceparent` names the span that decided it,
 * not whatever the queue happens to run in.
 */
export function jsPublishJob<C extends MessageContract>(
  bus: () => Bus | undefined,
  contract: C,
  subject: string,
  payload: InputOf<C>,
  opts: JsPublishOptions = {},
): PublishJob {
  const ctx = context.active();
  return {
    subject,
    send: () => {
      const b = bus();
      if (b === undefined || !b.isConnected())
        return Promise.reject(new NotConnectedError(`not connected to NATS: ${subject} waits`));
      return context.with(ctx, () => b.jsPublish(contract, subject, payload, opts));
    },
  };
}

export class KeyedPublisher {
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

  /** Retries now instead of after the backoff (NATS is back). */
  kick(): void {
    this.#backoffUntil = 0;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#pump();
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
      this.#backoffUntil = Date.now() + backoffDelay(this.#attempt, this.#opts.backoff);
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
