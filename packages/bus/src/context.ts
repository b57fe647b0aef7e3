import type { Tracer } from '@opentelemetry/api';
import type { NatsConnection } from '@nats-io/transport-node';
import type { BusMetrics } from './metrics.ts';

/** What a pino logger offers and the bus needs; any logger with these four methods works. */
export interface BusLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Shared by the bus modules; one per connection, built by connectBus. */
export interface BusContext {
  readonly nc: NatsConnection;
  readonly service: string;
  /** CloudEvents source of everything this service sends: `/dyad/<service>`. */
  readonly source: string;
  readonly logger: BusLogger;
  readonly metrics: BusMetrics;
  readonly tracer: Tracer;
  /** Loops (subscriptions, consumers) to stop and wait for on drain. */
  readonly workers: Set<BusWorker>;
}

/** A running subscription or consumer. */
export interface BusWorker {
  /** Stops taking new messages and resolves once the ones already taken are handled. */
  stop(): Promise<void>;
  /** Resolves when the worker has ended (stopped, drained or connection closed). */
  readonly done: Promise<void>;
}

/** Registers a worker so drain() can stop it and wait; it unregisters itself when done. */
export function track(
  ctx: BusContext,
  stopTaking: () => Promise<void>,
  loop: Promise<void>,
  what: string,
): BusWorker {
  const done: Promise<void> = loop
    .then(
      () => undefined,
      (err: unknown) => ctx.logger.error({ err, what }, 'message loop failed'),
    )
    .finally(() => ctx.workers.delete(worker));
  const worker: BusWorker = {
    stop: async () => {
      await stopTaking();
      await done;
    },
    done,
  };
  ctx.workers.add(worker);
  return worker;
}
