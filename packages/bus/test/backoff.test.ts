import { describe, expect, it } from 'vitest';
import { backoffDelay, oneAtATime, retryWithBackoff } from '../src/index.ts';

const policy = { initialMs: 100, maxMs: 1000 };

describe('backoff', () => {
  it('doubles from the initial wait up to the cap, with half of each wait random', () => {
    const low = (n: number) => backoffDelay(n, policy, () => 0);
    const high = (n: number) => backoffDelay(n, policy, () => 1);
    expect([1, 2, 3, 4, 5, 40].map(high)).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect([1, 2, 5].map(low)).toEqual([50, 100, 500]);
  });

  it('retries until the attempt succeeds, telling each failure and its wait', async () => {
    const seen: Array<[number, number]> = [];
    let left = 2;
    const r = await retryWithBackoff(
      (n) => (left-- > 0 ? Promise.reject(new Error(`try ${n}`)) : Promise.resolve(n)),
      { policy: { initialMs: 1, maxMs: 2 }, onError: (_e, n, wait) => seen.push([n, wait]) },
    );
    expect(r).toBe(3);
    expect(seen.map(([n]) => n)).toEqual([1, 2]);
    expect(seen.every(([, w]) => w > 0 && w <= 2)).toBe(true);
  });

  it('stops when told, without another attempt', async () => {
    let attempts = 0;
    let stop = false;
    await expect(
      retryWithBackoff(
        () => {
          attempts++;
          stop = true;
          return Promise.reject(new Error('nats away'));
        },
        { policy: { initialMs: 1, maxMs: 1 }, onError: () => {}, stopped: () => stop },
      ),
    ).resolves.toBeUndefined();
    expect(attempts).toBe(1);
  });

  it('gives up after its attempts with the last error, waiting only between them', async () => {
    const waits: number[] = [];
    let tries = 0;
    await expect(
      retryWithBackoff(
        (n) => {
          tries++;
          return Promise.reject(new Error(`try ${n}`));
        },
        {
          policy: { initialMs: 1, maxMs: 1 },
          attempts: 3,
          onError: (_e, _n, wait) => waits.push(wait),
        },
      ),
    ).rejects.toThrow('try 3');
    expect(tries).toBe(3);
    expect(waits).toHaveLength(2);
  });

  it('one at a time: triggers during a run make exactly one more run, which starts after it', async () => {
    const log: string[] = [];
    let release!: () => void;
    let runs = 0;
    const t = oneAtATime(async () => {
      const n = ++runs;
      log.push(`start ${n}`);
      if (n === 1) await new Promise<void>((r) => (release = r));
      log.push(`end ${n}`);
    });
    t.trigger();
    t.trigger();
    t.trigger();
    release();
    await t.running();
    while (t.running()) await t.running();
    expect(log).toEqual(['start 1', 'end 1', 'start 2', 'end 2']);
  });
});
