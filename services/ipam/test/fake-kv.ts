// An in-memory stand-in for a JetStream KV bucket with history 1: the same revision checks and
// delete markers, so block assignment can be driven through races and failures without a server.
// Only what ipam uses is implemented.
import type { KvBucket, KvEntry, KvWrite } from '@dyad/bus';

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

/** A write that expected another revision than the key's last. */
class Conflict extends Error {}

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
    if (previousSeq !== undefined && (cur?.rev ?? 0) !== previousSeq) throw new Conflict();
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

  asKv(): KvBucket {
    const entry = (m: Msg): KvEntry => ({
      key: m.key,
      revision: m.rev,
      operation: m.op,
      value: m.value,
    });
    const tick = () => new Promise<void>((r) => setImmediate(r));
    const conflictAs = <T>(write: () => T, onConflict: T): T => {
      try {
        return write();
      } catch (err) {
        if (err instanceof Conflict) return onConflict;
        throw err;
      }
    };
    const keys = async (filter = '>') => {
      await tick();
      return this.liveKeys(filter);
    };
    return {
      bucket: 'FAKE',
      get: async (key) => {
        await tick();
        this.fault.beforeRead?.(key);
        const m = this.last.get(key);
        return m === undefined ? undefined : entry(m);
      },
      put: async (key, value, expectRevision) => {
        await tick();
        await this.fault.holdWrite?.(key);
        return conflictAs<KvWrite>(() => this.write(key, 'PUT', value, expectRevision), 'conflict');
      },
      // As the KV client: create expects nothing there, or a delete or purge marker.
      create: async (key, value) => {
        await tick();
        await this.fault.holdWrite?.(key);
        const cur = this.last.get(key);
        const expect = cur === undefined || cur.op === 'PUT' ? 0 : cur.rev;
        return conflictAs<KvWrite>(() => this.write(key, 'PUT', value, expect), 'conflict');
      },
      delete: async (key, expectRevision) => {
        await tick();
        await this.fault.holdWrite?.(key);
        return conflictAs(() => {
          this.write(key, 'DEL', new Uint8Array(), expectRevision);
          return true;
        }, false);
      },
      // History 1: a purge leaves just its marker (the TTL it carries is not modelled).
      purge: async (key, expectRevision) => {
        await tick();
        await this.fault.holdWrite?.(key);
        return conflictAs(() => {
          this.write(key, 'PURGE', new Uint8Array(), expectRevision);
          return true;
        }, false);
      },
      keys,
      values: async (filter) =>
        (await keys(filter)).map((key) => {
          const m = this.last.get(key) as Msg;
          return { key, revision: m.rev, value: this.json(key) };
        }),
      watchUpdates: () => Promise.reject(new Error('FakeKv does not watch')),
    };
  }
}
