import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { KvWatchInclude } from '@nats-io/kv';
import type { KV } from '@nats-io/kv';

/** One key's last write: a value (`PUT`), or the marker a delete or purge left. */
export interface KvEntry {
  readonly key: string;
  readonly revision: number;
  readonly operation: 'PUT' | 'DEL' | 'PURGE';
  readonly value: Uint8Array;
}

/** A key's current value, as JSON (not yet checked against a schema). */
export interface KvValue {
  readonly key: string;
  readonly revision: number;
  readonly value: unknown;
}

/** The revision written, or 'conflict' when the key's last revision was not the one expected. */
export type KvWrite = number | 'conflict';

/** Every change to the bucket from now on, until stopped. */
export interface KvWatch extends AsyncIterable<KvEntry> {
  stop(): void;
}

/**
 * A JetStream KV bucket as Dyad's stores use it. Every conditional write reports a lost race as
 * a value ('conflict', false), not an exception: under contention it is a normal outcome. Other
 * failures throw.
 */
export interface KvBucket {
  readonly bucket: string;
  get(key: string): Promise<KvEntry | undefined>;
  /** Writes `value`; with `expectRevision`, only if that is the key's last revision (0: none). */
  put(key: string, value: Uint8Array, expectRevision?: number): Promise<KvWrite>;
  /** Writes `value` if the key has no value (never written, or deleted or purged). */
  create(key: string, value: Uint8Array): Promise<KvWrite>;
  /** Leaves a delete marker if the key's last revision is `expectRevision` (> 0). */
  delete(key: string, expectRevision: number): Promise<boolean>;
  /** Drops the key's history if its last revision is `expectRevision` (> 0); the marker expires after `markerTtl`. */
  purge(key: string, expectRevision: number, markerTtl: string): Promise<boolean>;
  /** Keys with a value, matching `filter` (a subject filter over keys). */
  keys(filter?: string): Promise<string[]>;
  /** The current values of the keys matching `filter`, `concurrency` reads at a time. A listing,
   *  not a snapshot: keys written meanwhile may or may not be in it. */
  values(filter: string, concurrency?: number): Promise<KvValue[]>;
  /** Changes from now on (the current values are not replayed). */
  watchUpdates(): Promise<KvWatch>;
}

function isConflict(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence ||
      err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

async function conflictAs<T>(write: () => Promise<T>, onConflict: T): Promise<T> {
  try {
    return await write();
  } catch (err) {
    if (isConflict(err)) return onConflict;
    throw err;
  }
}

function noExpectation(what: string, key: string, revision: number): void {
  // The KV client sends no expectation for 0, which would remove whatever is there.
  if (revision <= 0) throw new RangeError(`${what} ${key}: no revision to expect`);
}

/** Dyad's view of a bucket handle of the nats.js KV client. */
export function kvBucket(kv: KV, bucket: string): KvBucket {
  const entry = (e: {
    key: string;
    revision: number;
    operation: 'PUT' | 'DEL' | 'PURGE';
    value: Uint8Array;
  }): KvEntry => ({ key: e.key, revision: e.revision, operation: e.operation, value: e.value });
  const self: KvBucket = {
    bucket,
    get: async (key) => {
      const e = await kv.get(key);
      return e === null ? undefined : entry(e);
    },
    put: (key, value, expectRevision) =>
      conflictAs<KvWrite>(
        () =>
          kv.put(key, value, expectRevision === undefined ? {} : { previousSeq: expectRevision }),
        'conflict',
      ),
    create: (key, value) => conflictAs<KvWrite>(() => kv.create(key, value), 'conflict'),
    delete: async (key, expectRevision) => {
      noExpectation('deleting', key, expectRevision);
      return conflictAs(async () => {
        await kv.delete(key, { previousSeq: expectRevision });
        return true;
      }, false);
    },
    purge: async (key, expectRevision, markerTtl) => {
      noExpectation('purging', key, expectRevision);
      return conflictAs(async () => {
        await kv.purge(key, { previousSeq: expectRevision, ttl: markerTtl });
        return true;
      }, false);
    },
    keys: async (filter = '>') => {
      const out: string[] = [];
      for await (const k of await kv.keys(filter)) out.push(k);
      return out;
    },
    values: async (filter, concurrency = 32) => {
      const keys = await self.keys(filter);
      const out: KvValue[] = [];
      let next = 0;
      await Promise.all(
        Array.from({ length: Math.min(concurrency, keys.length) }, async () => {
          while (next < keys.length) {
            const key = keys[next++] as string;
            const e = await kv.get(key);
            if (e !== null && e.operation === 'PUT') {
              out.push({ key, revision: e.revision, value: e.json() });
            }
          }
        }),
      );
      return out;
    },
    watchUpdates: async () => {
      const w = await kv.watch({ include: KvWatchInclude.UpdatesOnly });
      return {
        stop: () => w.stop(),
        async *[Symbol.asyncIterator]() {
          for await (const e of w) yield entry(e);
        },
      };
    },
  };
  return self;
}
