import { describe, expect, it } from 'vitest';
import { KeyedPublisher } from '../src/index.ts';

function deferred() {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A publish that does `f` and succeeds. */
const sends = (f: () => unknown) => (): Promise<void> => {
  f();
  return Promise.resolve();
};

const opts = { concurrency: 4, backoff: { initialMs: 1, maxMs: 5 }, onError: () => {} };

describe('KeyedPublisher', () => {
  it('sends only the newest state of a subject that changed while its publish was in flight', async () => {
    const p = new KeyedPublisher(opts);
    const sent: string[] = [];
    const first = deferred();
    p.enqueue({ subject: 'a', send: () => (sent.push('v1'), first.promise) });
    p.enqueue({ subject: 'a', send: sends(() => sent.push('v2')) });
    p.enqueue({ subject: 'a', send: sends(() => sent.push('v3')) });
    first.resolve();
    await p.idle();
    expect(sent).toEqual(['v1', 'v3']);
  });

  it('retries a failed publish until it succeeds, and keeps a newer state queued meanwhile', async () => {
    const errors: number[] = [];
    const p = new KeyedPublisher({ ...opts, onError: (_s, _e, n) => errors.push(n) });
    let failures = 3;
    const sent: string[] = [];
    p.enqueue({
      subject: 'a',
      send: () =>
        failures-- > 0 ? Promise.reject(new Error('nats away')) : sends(() => sent.push('v1'))(),
    });
    p.enqueue({ subject: 'b', send: sends(() => sent.push('b1')) });
    await p.idle();
    expect(sent.sort()).toEqual(['b1', 'v1']);
    expect(errors).toHaveLength(3);
  });

  it('a newer state enqueued during a failing publish wins over the failed one', async () => {
    const p = new KeyedPublisher(opts);
    const sent: string[] = [];
    const first = deferred();
    p.enqueue({ subject: 'a', send: () => first.promise });
    p.enqueue({ subject: 'a', send: sends(() => sent.push('v2')) });
    first.reject(new Error('timeout'));
    await p.idle();
    expect(sent).toEqual(['v2']);
  });

  it('never runs more than `concurrency` sends at once', async () => {
    const p = new KeyedPublisher({ ...opts, concurrency: 2 });
    let running = 0;
    let peak = 0;
    for (let i = 0; i < 10; i++) {
      p.enqueue({
        subject: `s${i}`,
        send: async () => {
          peak = Math.max(peak, ++running);
          await new Promise((r) => setImmediate(r));
          running--;
        },
      });
    }
    await p.idle();
    expect(peak).toBe(2);
  });
});
