import { oneAtATime, retryWithBackoff } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import type { Logger } from '@dyad/telemetry';

/** A service instance that reads its inputs and republishes what it owns when it starts. */
export interface StartOver {
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface StartedOver<S> {
  /** The instance running now (a new one after every reconnect). */
  current(): S;
  /** Stops the instance, after a start-over under way. */
  stop(): Promise<void>;
}

/**
 * Runs the instance `make` builds, and after every reconnect to NATS starts over with a new one,
 * as at start-up. A server that came back may have lost its data: the bootstrap service makes the
 * streams and buckets again, empty, and consumers on them are gone (an ordered consumer that
 * nats.js recreates resumes after the sequence it last saw, past a recreated stream's first
 * messages). A new instance reads every input again and republishes what it owns into the new
 * streams; when nothing was lost, its comparison with the stored state publishes nothing. One
 * start-over at a time, retried with backoff while the streams are not there yet.
 */
export async function startOverOnReconnect<S extends StartOver>(
  bus: Pick<Bus, 'onReconnect'>,
  make: () => S,
  logger: Logger,
): Promise<StartedOver<S>> {
  let current = make();
  await current.start();
  let running = true;
  let stopped = false;
  const restart = oneAtATime(async () => {
    running = false;
    await current.stop();
    await retryWithBackoff(
      async (attempt) => {
        const next = make();
        try {
          await next.start();
        } catch (err) {
          await next.stop().catch(() => undefined);
          throw err;
        }
        current = next;
        running = true;
        logger.info({ attempt }, 'started over after a reconnect');
      },
      {
        policy: { initialMs: 250, maxMs: 10_000 },
        stopped: () => stopped,
        onError: (err, attempt, retryInMs) =>
          logger.error({ err, attempt, retryInMs }, 'not started over yet; retrying'),
      },
    );
  });
  const off = bus.onReconnect(restart.trigger);
  return {
    current: () => current,
    stop: async () => {
      stopped = true;
      off();
      await restart.running();
      if (running) await current.stop();
    },
  };
}
