import type { KV } from '@nats-io/kv';

/** A key's current value, as JSON (not yet checked against a schema). */
export interface KvValue {
  readonly key: string;
  readonly revision: number;
  readonly value: unknown;
}

/**
 * The current values of the keys matching `filter` (deleted and purged keys left out), read
 * `concurrency` gets at a time. A listing, not a snapshot: keys written during the read may or
 * may not be in it.
 */
export async function kvValues(kv: KV, filter: string, concurrency = 32): Promise<KvValue[]> {
  const keys: string[] = [];
  for await (const k of await kv.keys(filter)) keys.push(k);
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
}
