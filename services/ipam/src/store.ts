import type { Family } from '@dyad/netaddr';
import type { IpamBlockClaimValue } from '@dyad/contracts';
import { IpamBlockClaim, IpamKey, IpamNodeRecord } from '@dyad/contracts';
import type { KvBucket, KvEntry } from '@dyad/bus';
import type { z } from 'zod';
import { StoreError } from './errors.ts';
import type { NodeRecord } from './record.ts';

/**
 * The DYAD_IPAM bucket, typed. Every write that decides something is conditional: a claim is a
 * write that expects the key's last revision to be what the caller knows (0, or the revision of
 * the delete marker a release left), an update expects the revision read. A lost race is the
 * value 'conflict', not an exception: under contention it is a normal outcome.
 */
export interface Stored<T> {
  readonly value: T;
  readonly revision: number;
}

/** A key's state: a value, or absent with the revision of its delete marker (0 if never written). */
export type Current<T> =
  | { readonly present: true; readonly value: T; readonly revision: number }
  | { readonly present: false; readonly revision: number };

export type WriteOutcome = number | 'conflict';

/** How long a purge marker stays: long enough for every watch to see it go by. */
export const PURGE_MARKER_TTL = '10m';

const enc = new TextEncoder();
const dec = new TextDecoder();

function storeError(what: string, err: unknown): StoreError {
  return new StoreError(`${what}: ${err instanceof Error ? err.message : String(err)}`, {
    cause: err,
  });
}

export function encodeJson(v: unknown): Uint8Array {
  return enc.encode(JSON.stringify(v));
}

export function decodeJson<S extends z.ZodType>(
  schema: S,
  key: string,
  bytes: Uint8Array,
): z.output<S> {
  let json: unknown;
  try {
    json = JSON.parse(dec.decode(bytes));
  } catch (err) {
    throw new StoreError(`${key} does not hold JSON`, { cause: err });
  }
  const r = schema.safeParse(json);
  if (!r.success) throw new StoreError(`${key} does not hold what it should: ${r.error.message}`);
  return r.data;
}

export class IpamStore {
  readonly kv: KvBucket;

  constructor(kv: KvBucket) {
    this.kv = kv;
  }

  async read<S extends z.ZodType>(schema: S, key: string): Promise<Current<z.output<S>>> {
    const e = await this.#get(key);
    if (e === undefined) return { present: false, revision: 0 };
    if (e.operation !== 'PUT') return { present: false, revision: e.revision };
    return { present: true, value: decodeJson(schema, key, e.value), revision: e.revision };
  }

  /** Writes `value` if the key's last revision is `expected` (0: never written). */
  writeIf(key: string, value: unknown, expected: number): Promise<WriteOutcome> {
    return this.#do(`writing ${key}`, () => this.kv.put(key, encodeJson(value), expected));
  }

  /** Deletes the key if its last revision is `expected`; false if it changed meanwhile. */
  deleteIf(key: string, expected: number): Promise<boolean> {
    return this.#do(`deleting ${key}`, () => this.kv.delete(key, expected));
  }

  /**
   * Removes a key for good if its last revision is `expected`: its history goes and the purge
   * marker left expires after `PURGE_MARKER_TTL`, so nothing of the key stays in the bucket (a
   * delete marker would, for ever). For keys that are not reused by revision: a deleted node's
   * record, the legacy keys. False if the key changed meanwhile.
   */
  purgeIf(key: string, expected: number): Promise<boolean> {
    return this.#do(`purging ${key}`, () => this.kv.purge(key, expected, PURGE_MARKER_TTL));
  }

  /** `create` that also succeeds over a delete marker, at the cost of reading it. */
  create(key: string, value: unknown): Promise<WriteOutcome> {
    return this.#do(`creating ${key}`, () => this.kv.create(key, encodeJson(value)));
  }

  /** The revision of the key's live value; undefined when it has none. */
  async revisionOf(key: string): Promise<number | undefined> {
    const e = await this.#get(key);
    return e === undefined || e.operation !== 'PUT' ? undefined : e.revision;
  }

  keys(filter: string): Promise<string[]> {
    return this.#do(`listing ${filter}`, () => this.kv.keys(filter));
  }

  #get(key: string): Promise<KvEntry | undefined> {
    return this.#do(`reading ${key}`, () => this.kv.get(key));
  }

  async #do<T>(what: string, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      throw storeError(what, err);
    }
  }

  // ---- typed shortcuts ----

  node(name: string): Promise<Current<NodeRecord>> {
    return this.read(IpamNodeRecord, IpamKey.node(name));
  }

  blockClaim(key: string): Promise<Current<IpamBlockClaimValue>> {
    return this.read(IpamBlockClaim, key);
  }

  async getJson(key: string): Promise<Stored<unknown> | undefined> {
    const e = await this.#get(key);
    if (e === undefined || e.operation !== 'PUT') return undefined;
    return { value: JSON.parse(dec.decode(e.value)) as unknown, revision: e.revision };
  }

  async putJson(key: string, value: unknown): Promise<number> {
    const r = await this.#do(`writing ${key}`, () => this.kv.put(key, encodeJson(value)));
    if (r === 'conflict') throw new StoreError(`writing ${key}: conflict without an expectation`);
    return r;
  }
}

/** `block.IPv6.fd00-d1ad--_120` → family and CIDR; undefined for other keys. */
export function parseBlockKey(key: string): { family: Family; cidr: string } | undefined {
  const m = /^block\.(IPv4|IPv6)\.(.+)_([0-9]{1,3})$/.exec(key);
  if (m === null) return undefined;
  return {
    family: m[1] as Family,
    cidr: `${(m[2] as string).replace(/-/g, ':')}/${m[3] as string}`,
  };
}

/**
 * The node of a legacy `slot.<node>.<n>` or `owner.<node>.<containerId>` key (a container id's
 * dots are written '=', so the node is everything up to the last dot); undefined for other keys.
 */
export function legacyKeyNode(key: string): string | undefined {
  for (const prefix of [IpamKey.slotPrefix, IpamKey.ownerPrefix]) {
    if (!key.startsWith(prefix)) continue;
    const last = key.lastIndexOf('.');
    return last > prefix.length ? key.slice(prefix.length, last) : undefined;
  }
  return undefined;
}
