/** How a retry waits: doubling from `initialMs` up to `maxMs`. */
export interface BackoffPolicy {
  readonly initialMs: number;
  readonly maxMs: number;
}

/**
 * The wait before retry `attempt` (1 for the first retry): doubling from `initialMs`, capped at
 * `maxMs`, with equal jitter (half of it fixed, half random), so a fleet that lost NATS at the
 * same moment does not come back in lockstep.
 */
export function backoffDelay(
  attempt: number,
  policy: BackoffPolicy,
  random: () => number = Math.random,
): number {
  const base = Math.min(
    policy.maxMs,
    policy.initialMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30),
  );
  return base * (0.5 + random() / 2);
}

export interface RetryOptions {
  readonly policy: BackoffPolicy;
  /** Called with every failure and the wait before the next attempt. */
  readonly onError: (err: unknown, attempt: number, retryInMs: number) => void;
  /** Checked before every attempt; true ends the loop with undefined. */
  readonly stopped?: () => boolean;
  /** At most this many attempts: the last one's error is thrown. Absent: no limit. */
  readonly attempts?: number;
}

/**
 * Runs `attempt` until it succeeds (or `stopped` says so, or `attempts` are spent), waiting a
 * backoff between tries.
 */
export async function retryWithBackoff<T>(
  attempt: (n: number) => Promise<T>,
  o: RetryOptions,
): Promise<T | undefined> {
  for (let n = 1; !(o.stopped?.() ?? false); n++) {
    try {
      return await attempt(n);
    } catch (err) {
      if (o.attempts !== undefined && n >= o.attempts) throw err;
      const wait = backoffDelay(n, o.policy);
      o.onError(err, n, wait);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
  return undefined;
}

/**
 * A trigger for `task` that never runs two at once: a trigger while it runs asks for one more
 * run after it (however many came), which sees whatever changed meanwhile. `running()` is the
 * run under way, if any (to wait for at shutdown).
 */
export function oneAtATime(task: () => Promise<void>): {
  readonly trigger: () => void;
  readonly running: () => Promise<void> | undefined;
} {
  let current: Promise<void> | undefined;
  let again = false;
  const trigger = (): void => {
    if (current) {
      again = true;
      return;
    }
    current = task().finally(() => {
      current = undefined;
      if (again) {
        again = false;
        trigger();
      }
    });
  };
  return { trigger, running: () => current };
}
