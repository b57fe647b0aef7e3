// An in-memory stand-in for a JetStream KV bucket with history 1: the same revision checks and
// delete markers, so block assignment can be driven through races and failures without a server.
// Only what ipam uses is implemented.
import type { KV } from '@dyad/bus';
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';

interface Msg {
  key: string;
  rev: number;
  op: 'PUT' | 'DEL' | 'PURGE';
  value: Uint8Array;
}

export interface Fault {
  /** Called before each write; throw to fail it (the write does not happen). */
  beforeWrite?: (key: string, op: 'PUT' | 'DEL' | 'PURGE') => void;
  /** Called after each write; throw to lose its ack (the write happened, the writer is told it failed). */
  afterWrite?: (key: string, op: 'PUT' | 'DEL' | 'PURGE') => void;
  /** A write of a key for which this returns a promise waits for it before writing. */
  holdWrite?: (key: string) => Promise<void> | undefined;
  /** Called before each read; throw to fail it. */
  beforeRead?: (key: string) => void;
}

function matches(filter: string, key: string): boolean {
  const f = filter.split('.');
  const k = key.split('.');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '>') return k.length > i;
    if (i >= k.length) return false;
    if (f[i] !== '*' && f[i] !== k[i]) return false;
  }
  return f.length === k.length;
}

function conflict(): JetStreamApiError {
  return new JetStreamApiError({
    code: 400,
    err_code: JetStreamApiCodes.StreamWrongLastSequence,
    description: 'wrong last sequence',
  });
}

export class FakeKv {
  readonly last = new Map<string, Msg>();
  seq = 0;
  writes = 0;
  fault: Fault = {};

  /**
   * The next write matching `match` fails once: `before` it happens (refused, or not yet done), or
   * `after` it (done, but its ack lost).
   */
  failNext(
    when: 'before' | 'after',
    match: (key: string, op: 'PUT' | 'DEL' | 'PURGE') => boolean,
  ): void {
    const hook = (key: string, op: 'PUT' | 'DEL' | 'PURGE'): void => {
      if (!match(key, op)) return;
      if (when === 'before') this.fault.beforeWrite = undefined;
      else this.fault.afterWrite = undefined;
      throw new Error(`injected: write failed ${when} it happened`);
    };
    if (when === 'before') this.fault.beforeWrite = hook;
    else this.fault.afterWrite = hook;
  }

  private write(
    key: string,
    op: 'PUT' | 'DEL' | 'PURGE',
    value: Uint8Array,
    previousSeq?: number,
  ): number {
    this.fault.beforeWrite?.(key, op);
    const cur = this.last.get(key);
    if (previousSeq !== undefined && (cur?.rev ?? 0) !== previousSeq) throw conflict();
    const m: Msg = { key, rev: ++this.seq, op, value };
    this.last.set(key, m);
    this.writes++;
    this.fault.afterWrite?.(key, op);
    return m.rev;
  }

  /** Live keys (not delete markers) matching a filter. */
  liveKeys(filter = '>'): string[] {
    return [...this.last.values()]
      .filter((m) => m.op === 'PUT' && matches(filter, m.key))
      .map((m) => m.key);
  }

  json(key: string): unknown {
    const m = this.last.get(key);
    return m === undefined || m.op !== 'PUT'
      ? undefined
      : JSON.parse(new TextDecoder().decode(m.value));
  }

  asKv(): KV {
    const entry = (m: Msg) => ({
      bucket: 'FAKE',
      key: m.key,
      rawKey: m.key,
      value: m.value,
      created: new Date(),
      revision: m.rev,
      operation: m.op,
      length: m.value.length,
      json: <T>() => JSON.parse(new TextDecoder().decode(m.value)) as T,
      string: () => new TextDecoder().decode(m.value),
    });
    const tick = () => new Promise<void>((r) => setImmediate(r));
    const kv = {
      get: async (key: string) => {
        await tick();
        this.fault.beforeRead?.(key);
        const m = this.last.get(key);
        return m === undefined ? null : entry(m);
      },
      put: async (key: string, value: Uint8Array, opts?: { previousSeq?: number }) => {
        await tick();
        await this.fault.holdWrite?.(key);
        return this.write(key, 'PUT', value, opts?.previousSeq);
      },
      // As the KV client: create expects nothing there, or a delete or purge marker.
      create: async (key: string, value: Uint8Array) => {
        await tick();
        await this.fault.holdWrite?.(key);
        const cur = this.last.get(key);
        return this.write(key, 'PUT', value, cur === undefined || cur.op === 'PUT' ? 0 : cur.rev);
      },
      // As the KV client, a previousSeq of 0 expects nothing: the delete is unconditional.
      delete: async (key: string, opts?: { previousSeq?: number }) => {
        await tick();
        await this.fault.holdWrite?.(key);
        this.write(key, 'DEL', new Uint8Array(), opts?.previousSeq || undefined);
      },
      // History 1: a purge leaves just its marker (the TTL it may carry is not modelled).
      purge: async (key: string, opts?: { previousSeq?: number }) => {
        await tick();
        await this.fault.holdWrite?.(key);
        this.write(key, 'PURGE', new Uint8Array(), opts?.previousSeq || undefined);
      },
      keys: async (filter: string | string[] = '>') => {
        await tick();
        const fs = Array.isArray(filter) ? filter : [filter];
        const ks = [...this.last.values()]
          .filter((m) => m.op === 'PUT' && fs.some((f) => matches(f, m.key)))
          .map((m) => m.key);
        return (async function* () {
          yield* ks;
        })();
      },
    };
    return kv as unknown as KV;
  }
}
