import { MAX_EVENT_BYTES } from '@dyad/contracts';
import type { MessageContract } from '@dyad/contracts';
import type { InputOf } from '@dyad/bus';

/** JSON with object keys sorted: equal values, equal text, whatever order they were built in. */
export function stableJson(v: unknown): string {
  return JSON.stringify(v, (_, x: unknown) =>
    x !== null && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : x,
  );
}

/** Where a sink's messages go: a KeyedPublisher in production (newest per subject, retried). */
export interface SinkPort {
  publish<C extends MessageContract>(
    contract: C,
    subject: string,
    payload: InputOf<C>,
    opts?: { ttl?: string },
  ): void;
}

export interface SinkOptions<C extends MessageContract> {
  readonly contract: C;
  readonly port: SinkPort;
  /** Nats-TTL of tombstones. */
  readonly tombstoneTtl: string;
  /** A payload refused before sending (it breaks its contract, or is too big to send). */
  readonly onRefused: (subject: string, why: string) => void;
  readonly onPublished: () => void;
}

/**
 * One kind of last-value output (a subject per object): remembers what the stream holds, and
 * publishes only what differs from it. Loaded from the stream at start-up, so a restart with
 * unchanged inputs publishes nothing, and `retainOnly` tombstones what should no longer be there.
 */
export class LastValueSink<C extends MessageContract> {
  readonly #o: SinkOptions<C>;
  /** subject → the upsert the stream holds (or will, once sent), and its stable JSON. */
  readonly #held = new Map<string, { readonly json: string; readonly value: unknown }>();

  constructor(options: SinkOptions<C>) {
    this.#o = options;
  }

  get size(): number {
    return this.#held.size;
  }

  subjects(): IterableIterator<string> {
    return this.#held.keys();
  }

  /** What the stream holds now (upserts only; a tombstone is nothing held). */
  load(stored: Iterable<readonly [string, unknown]>): void {
    this.#held.clear();
    for (const [subject, value] of stored)
      this.#held.set(subject, { json: stableJson(value), value });
  }

  /** Publishes `payload` on `subject` unless the stream holds it already; true when sent. */
  upsert(subject: string, payload: InputOf<C>): boolean {
    const json = stableJson(payload);
    if (this.#held.get(subject)?.json === json) return false;
    // Refused here, not by the publisher: a payload that can never be sent would otherwise be
    // retried for ever ahead of everything queued behind it.
    const parsed = this.#o.contract.schema.safeParse(payload);
    if (!parsed.success) {
      this.#o.onRefused(subject, parsed.error.message);
      return false;
    }
    if (json.length > MAX_EVENT_BYTES) {
      this.#o.onRefused(
        subject,
        `${json.length} bytes is more than the ${MAX_EVENT_BYTES} a message may have`,
      );
      return false;
    }
    this.#held.set(subject, { json, value: payload });
    this.#o.port.publish(this.#o.contract, subject, payload);
    this.#o.onPublished();
    return true;
  }

  /** Publishes `tombstone` on `subject` if the stream holds a value there; true when sent. */
  remove(subject: string, tombstone: InputOf<C>): boolean {
    if (!this.#held.delete(subject)) return false;
    this.#o.port.publish(this.#o.contract, subject, tombstone, { ttl: this.#o.tombstoneTtl });
    this.#o.onPublished();
    return true;
  }

  /** The last upsert held on `subject`, as published or as read from the stream. */
  held(subject: string): unknown {
    return this.#held.get(subject)?.value;
  }

  /** Tombstones every held subject not in `keep`; `tombstone` builds each from its last value. */
  retainOnly(
    keep: ReadonlySet<string>,
    tombstone: (subject: string, last: unknown) => InputOf<C> | undefined,
  ): number {
    let n = 0;
    for (const [subject, held] of [...this.#held]) {
      if (keep.has(subject)) continue;
      const t = tombstone(subject, held.value);
      if (t !== undefined && this.remove(subject, t)) n++;
    }
    return n;
  }
}
