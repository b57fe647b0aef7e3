import { createInbox } from '@nats-io/transport-node';
import type { Msg, MsgHdrs, NatsConnection, Subscription } from '@nats-io/transport-node';

interface Waiting {
  readonly deadline: number;
  readonly resolve: (m: Msg) => void;
  readonly reject: (err: Error) => void;
}

/**
 * Requests from a load generator that stands in for many agents: every reply comes back on one
 * subscription and one timer sweeps the overdue, so the generator spends its CPU on the load and
 * not on `nc.request`'s per-request inbox token and timer. The wire traffic is the same: a
 * publish with a reply subject, one reply message.
 */
export class Requester {
  private readonly nc: NatsConnection;
  private readonly inbox = createInbox();
  private readonly waiting = new Map<number, Waiting>();
  private readonly sub: Subscription;
  private readonly sweeper: NodeJS.Timeout;
  private readonly timeoutMs: number;
  private seq = 0;

  constructor(nc: NatsConnection, timeoutMs = 30_000) {
    this.nc = nc;
    this.timeoutMs = timeoutMs;
    this.sub = nc.subscribe(`${this.inbox}.*`, {
      callback: (err, m) => {
        if (err !== null) return;
        const id = Number(m.subject.slice(this.inbox.length + 1));
        const w = this.waiting.get(id);
        if (w === undefined) return;
        this.waiting.delete(id);
        w.resolve(m);
      },
    });
    this.sweeper = setInterval(() => this.sweep(), 250);
    this.sweeper.unref();
  }

  request(subject: string, body: Uint8Array, headers: MsgHdrs): Promise<Msg> {
    const id = ++this.seq;
    return new Promise<Msg>((resolve, reject) => {
      this.waiting.set(id, { deadline: Date.now() + this.timeoutMs, resolve, reject });
      this.nc.publish(subject, body, { headers, reply: `${this.inbox}.${id}` });
    });
  }

  close(): void {
    clearInterval(this.sweeper);
    this.sub.unsubscribe();
    for (const [id, w] of this.waiting) {
      this.waiting.delete(id);
      w.reject(new Error('requester closed'));
    }
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, w] of this.waiting) {
      if (w.deadline > now) continue;
      this.waiting.delete(id);
      w.reject(new Error(`no reply within ${this.timeoutMs} ms`));
    }
  }
}
