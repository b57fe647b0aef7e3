import type { MessageContract } from '@dyad/contracts';
import type { Bus } from './connect.ts';
import type { BusLogger } from './context.ts';
import type { InputOf, JsPublishOptions } from './publish.ts';

interface Queued {
  readonly contract: MessageContract;
  readonly payload: unknown;
  readonly opts: JsPublishOptions;
}

/**
 * Publishes the newest state of each subject to JetStream, for last-value streams: a subject
 * queued again before it was sent is sent once, with its newest payload. Publishes retry with
 * backoff while NATS is away, so every subject's last word gets there once it is back; callers
 * never wait for it.
 */
export class LatestPublisher {
  readonly #bus: () => Bus | undefined;
  readonly #logger: BusLogger;
  readonly #queue = new Map<string, Queued>();
  #running: Promise<void> | undefined;
  #closed = false;
  #wake: (() => void) | undefined;

  /** `bus` returns undefined until the first connection is up. */
  constructor(bus: () => Bus | undefined, logger: BusLogger) {
    this.#bus = bus;
    this.#logger = logger;
  }

  publish<C extends MessageContract>(
    contract: C,
    subject: string,
    payload: InputOf<C>,
    opts: JsPublishOptions = {},
  ): void {
    this.#queue.delete(subject); // re-insert: newest last
    this.#queue.set(subject, { contract, payload, opts });
    this.kick();
  }

  /** Subjects queued and not yet acknowledged. */
  get pending(): number {
    return this.#queue.size;
  }

  /** Wakes the sender now (after a reconnect, or for new work). */
  kick(): void {
    if (this.#closed) return;
    if (this.#wake) {
      const w = this.#wake;
      this.#wake = undefined;
      w();
    }
    this.#running ??= this.#drain().finally(() => {
      this.#running = undefined;
      if (this.#queue.size > 0) this.kick();
    });
  }

  async #drain(): Promise<void> {
    let backoff = 250;
    const retry = async () => {
      await this.#sleep(backoff);
      backoff = Math.min(backoff * 2, 10_000);
    };
    while (this.#queue.size > 0 && !this.#closed) {
      const next = this.#queue.entries().next();
      if (next.done) return;
      const [subject, q] = next.value;
      const bus = this.#bus();
      if (bus === undefined || !bus.isConnected()) {
        await retry();
        continue;
      }
      try {
        await bus.jsPublish(q.contract, subject, q.payload as InputOf<typeof q.contract>, q.opts);
        // only drop it if nothing newer was queued meanwhile
        if (this.#queue.get(subject) === q) this.#queue.delete(subject);
        backoff = 250;
      } catch (err) {
        this.#logger.warn({ err, subject }, 'not published yet; retrying');
        await retry();
      }
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  /** Resolves once everything queued is published (or the publisher is closed). */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  close(): void {
    this.#closed = true;
    this.#wake?.();
  }
}
