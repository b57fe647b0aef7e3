import { JetStreamApiCodes } from '@nats-io/jetstream';
import { createInbox, headers as natsHeaders } from '@nats-io/transport-node';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { BusError } from './errors.ts';

/** A KV write JetStream refused or did not acknowledge in time. */
export class KvWriteError extends BusError {
  override name = 'KvWriteError';
  readonly key: string;
  /** JetStream's `err_code` (e.g. 10071: not at the expected revision); 0 when there was no ack. */
  readonly code: number;
  constructor(subject: string, key: string, code: number, message: string) {
    super(`KV write to ${subject} failed: ${message}`);
    this.key = key;
    this.code = code;
  }
  /** The key had moved on from the revision the write expected: a lost race, not a failure. */
  get conflict(): boolean {
    return (
      this.code === JetStreamApiCodes.StreamWrongLastSequence ||
      this.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown
    );
  }
}

export interface KvWriteOptions {
  /** Write only if the key's last revision is this (0: the key was never written). */
  readonly previousRevision?: number;
}

export interface KvPurgeOptions extends KvWriteOptions {
  /**
   * How long the purge marker itself stays (NATS duration, e.g. `10m`); after that the key is as
   * if never written. The bucket must allow message TTLs.
   */
  readonly ttl?: string;
}

interface Pending {
  readonly key: string;
  readonly deadline: number;
  readonly resolve: (revision: number) => void;
  readonly reject: (err: KvWriteError) => void;
}

interface PubAckJson {
  seq?: number;
  error?: { err_code?: number; code?: number; description?: string };
}

const EXPECTED_LAST_SUBJECT_SEQUENCE = 'Nats-Expected-Last-Subject-Sequence';
const SWEEP_MS = 100;

/**
 * Puts and deletes on one KV bucket, pipelined over a single reply subscription. The @nats-io/kv
 * client makes each write a full request (an inbox entry, a timer, and an Error object built even
 * on success); a service that writes for every request it answers spends a large share of its CPU
 * there. Here a write is one publish and one entry in a map; one timer sweeps the overdue ones.
 * Semantics are the bucket's own: the same subjects, the same revision checks, the same acks.
 */
export class KvWriter {
  private readonly nc: NatsConnection;
  private readonly prefix: string;
  private readonly timeoutMs: number;
  private readonly inbox: string;
  private readonly pending = new Map<number, Pending>();
  private readonly sub: Subscription;
  private readonly sweeper: NodeJS.Timeout;
  private seq = 0;
  private readonly dec = new TextDecoder();

  constructor(nc: NatsConnection, bucket: string, timeoutMs = 5000) {
    this.nc = nc;
    this.prefix = `$KV.${bucket}.`;
    this.timeoutMs = timeoutMs;
    this.inbox = createInbox();
    this.sub = nc.subscribe(`${this.inbox}.*`, { callback: (err, m) => this.onAck(err, m) });
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweeper.unref();
  }

  /** Stores `value` under `key`; resolves with the new revision. */
  put(key: string, value: Uint8Array, opts: KvWriteOptions = {}): Promise<number> {
    const h = natsHeaders();
    if (opts.previousRevision !== undefined) {
      h.set(EXPECTED_LAST_SUBJECT_SEQUENCE, String(opts.previousRevision));
    }
    return this.send(key, value, h);
  }

  /** Writes the key's delete marker (history is kept); resolves with its revision. */
  delete(key: string, opts: KvWriteOptions = {}): Promise<number> {
    const h = natsHeaders();
    h.set('KV-Operation', 'DEL');
    if (opts.previousRevision !== undefined) {
      h.set(EXPECTED_LAST_SUBJECT_SEQUENCE, String(opts.previousRevision));
    }
    return this.send(key, new Uint8Array(0), h);
  }

  /**
   * Removes the key's history, leaving one purge marker (expiring after `ttl` if given); resolves
   * with the marker's revision.
   */
  purge(key: string, opts: KvPurgeOptions = {}): Promise<number> {
    const h = natsHeaders();
    h.set('KV-Operation', 'PURGE');
    h.set('Nats-Rollup', 'sub');
    if (opts.ttl !== undefined) h.set('Nats-TTL', opts.ttl);
    if (opts.previousRevision !== undefined) {
      h.set(EXPECTED_LAST_SUBJECT_SEQUENCE, String(opts.previousRevision));
    }
    return this.send(key, new Uint8Array(0), h);
  }

  /** Fails what is in flight and stops listening for acks. */
  close(): void {
    clearInterval(this.sweeper);
    this.sub.unsubscribe();
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.reject(this.error(p.key, 0, 'the writer was closed before the ack'));
    }
  }

  private send(key: string, value: Uint8Array, h: ReturnType<typeof natsHeaders>): Promise<number> {
    const id = ++this.seq;
    return new Promise<number>((resolve, reject) => {
      this.pending.set(id, { key, deadline: Date.now() + this.timeoutMs, resolve, reject });
      try {
        this.nc.publish(this.prefix + key, value, { headers: h, reply: `${this.inbox}.${id}` });
      } catch (err) {
        this.pending.delete(id);
        reject(this.error(key, 0, err instanceof Error ? err.message : String(err)));
      }
    });
  }

  private onAck(err: Error | null, m: Msg): void {
    if (err !== null) return;
    const id = Number(m.subject.slice(this.inbox.length + 1));
    const p = this.pending.get(id);
    if (p === undefined) return; // already timed out
    this.pending.delete(id);
    if (m.headers?.hasError === true) {
      // A status reply: 503 when no stream listens on the subject.
      p.reject(this.error(p.key, m.headers.code, m.headers.description || 'no JetStream'));
      return;
    }
    let ack: PubAckJson;
    try {
      ack = JSON.parse(this.dec.decode(m.data)) as PubAckJson;
    } catch {
      p.reject(this.error(p.key, 0, 'the ack was not JSON'));
      return;
    }
    if (ack.error !== undefined) {
      const e = ack.error;
      p.reject(this.error(p.key, e.err_code ?? e.code ?? 0, e.description ?? 'refused'));
    } else if (typeof ack.seq === 'number') {
      p.resolve(ack.seq);
    } else {
      p.reject(this.error(p.key, 0, 'the ack has no sequence'));
    }
  }

  private error(key: string, code: number, message: string): KvWriteError {
    return new KvWriteError(this.prefix + key, key, code, message);
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, p] of this.pending) {
      if (p.deadline > now) continue;
      this.pending.delete(id);
      p.reject(this.error(p.key, 0, `no ack within ${this.timeoutMs} ms`));
    }
  }
}
