import type { Family, IpamBlockClaimValue } from '@dyad/contracts';
import { IpamBlockClaim, IpamKey, IpamNodeRecord } from '@dyad/contracts';
import type { KV } from '@dyad/bus';
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { StoreError } from './errors.ts';
import type { NodeRecord } from './record.ts';

/**
 * The DYAD_IPAM bucket, typed. Every write that decides something is conditional: `create` for a
 * claim, a revision-checked update or delete for a node record. A lost race is the value
 * 'conflict', not an exception, because it is the normal outcome under contention.
 */
export interface Stored<T> {
  readonly value: T;
  readonly revision: number;
}

export type WriteOutcome = number | 'conflict';

const enc = new TextEncoder();
const dec = new TextDecoder();

export function isConflict(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence ||
      err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

function storeError(what: string, err: unknown): StoreError {
  return new StoreError(`${what}: ${err instanceof Error ? err.message : String(err)}`, {
    cause: err,
  });
}

export class IpamStore {
  readonly kv: KV;

  constructor(kv: KV) {
    this.kv = kv;
  }

  async getNode(name: string): Promise<Stored<NodeRecord> | undefined> {
    const key = IpamKey.node(name);
    const e = await this.kv.get(key).catch((err: unknown) => {
      throw storeError(`reading ${key}`, err);
    });
    if (e === null || e.operation !== 'PUT') return undefined;
    const parsed = IpamNodeRecord.safeParse(JSON.parse(dec.decode(e.value)));
    if (!parsed.success) {
      throw new StoreError(`${key} (revision ${e.revision}) does not hold a node record`);
    }
    return { value: parsed.data, revision: e.revision };
  }

  /** The revision of a node record, 0 when absent; cheaper to compare than to decode. */
  async nodeRevision(name: string): Promise<number> {
    const e = await this.kv.get(IpamKey.node(name)).catch((err: unknown) => {
      throw storeError(`reading ${IpamKey.node(name)}`, err);
    });
    return e === null || e.operation !== 'PUT' ? 0 : e.revision;
  }

  /**
   * Writes a node record if the stored one is still at `revision` (0: absent). `undefined`
   * deletes it under the same condition.
   */
  async writeNode(
    name: string,
    record: NodeRecord | undefined,
    revision: number,
  ): Promise<WriteOutcome> {
    const key = IpamKey.node(name);
    try {
      if (record === undefined) {
        if (revision === 0) return 0;
        await this.kv.delete(key, { previousSeq: revision });
        return 0;
      }
      const data = enc.encode(JSON.stringify(record));
      return revision === 0
        ? await this.kv.create(key, data)
        : await this.kv.update(key, data, revision);
    } catch (err) {
      if (isConflict(err)) return 'conflict';
      throw storeError(`writing ${key}`, err);
    }
  }

  async nodeNames(): Promise<string[]> {
    return (await this.listKeys(`${IpamKey.nodePrefix}>`)).map((k) =>
      k.slice(IpamKey.nodePrefix.length),
    );
  }

  /** Claims a block for a node: succeeds for exactly one claimant. */
  async claimBlock(
    family: Family,
    cidr: string,
    claim: IpamBlockClaimValue,
  ): Promise<WriteOutcome> {
    const key = IpamKey.block(family, cidr);
    try {
      return await this.kv.create(key, enc.encode(JSON.stringify(claim)));
    } catch (err) {
      if (isConflict(err)) return 'conflict';
      throw storeError(`claiming ${key}`, err);
    }
  }

  async getBlockClaim(key: string): Promise<Stored<IpamBlockClaimValue> | undefined> {
    const e = await this.kv.get(key).catch((err: unknown) => {
      throw storeError(`reading ${key}`, err);
    });
    if (e === null || e.operation !== 'PUT') return undefined;
    const parsed = IpamBlockClaim.safeParse(JSON.parse(dec.decode(e.value)));
    if (!parsed.success) throw new StoreError(`${key} does not hold a block claim`);
    return { value: parsed.data, revision: e.revision };
  }

  /** Withdraws a claim if it is still the one read at `revision`. */
  async releaseBlock(key: string, revision: number): Promise<boolean> {
    try {
      await this.kv.delete(key, { previousSeq: revision });
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw storeError(`releasing ${key}`, err);
    }
  }

  async blockKeys(): Promise<string[]> {
    return this.listKeys(`${IpamKey.blockPrefix}>`);
  }

  async getJson(key: string): Promise<Stored<unknown> | undefined> {
    const e = await this.kv.get(key);
    if (e === null || e.operation !== 'PUT') return undefined;
    return { value: JSON.parse(dec.decode(e.value)) as unknown, revision: e.revision };
  }

  async putJson(key: string, value: unknown): Promise<number> {
    return this.kv.put(key, enc.encode(JSON.stringify(value)));
  }

  private async listKeys(filter: string): Promise<string[]> {
    try {
      const out: string[] = [];
      for await (const k of await this.kv.keys(filter)) out.push(k);
      return out;
    } catch (err) {
      throw storeError(`listing ${filter}`, err);
    }
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
