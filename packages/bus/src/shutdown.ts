import type { BusLogger } from './context.ts';

export interface Drainable {
  drain(): Promise<void>;
}

export interface SignalOptions {
  readonly logger?: BusLogger;
  /** Default SIGTERM and SIGINT. */
  readonly signals?: readonly NodeJS.Signals[];
  /** Runs before the bus drains, e.g. stop accepting HTTP, close watches. */
  readonly beforeDrain?: () => void | Promise<void>;
  /** Runs after the drain, e.g. flush tracing. */
  readonly afterDrain?: () => void | Promise<void>;
  /** Called with 0 after a clean drain, 1 after a failure or a second signal. Default process.exit. */
  readonly exit?: (code: number) => void;
}

/**
 * Drains the bus on SIGTERM/SIGINT so in-flight handlers finish and ack before the process exits;
 * a second signal exits at once. Returns a function that removes the handlers.
 */
export function installSignalHandlers(bus: Drainable, opts: SignalOptions = {}): () => void {
  const signals = opts.signals ?? ['SIGTERM', 'SIGINT'];
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      opts.logger?.warn({ signal }, 'second signal, exiting without waiting');
      exit(1);
      return;
    }
    stopping = true;
    opts.logger?.info({ signal }, 'shutting down: draining the bus');
    void (async () => {
      try {
        await opts.beforeDrain?.();
        await bus.drain();
        await opts.afterDrain?.();
        exit(0);
      } catch (err) {
        opts.logger?.error({ err }, 'shutdown failed');
        exit(1);
      }
    })();
  };
  for (const s of signals) process.on(s, onSignal);
  return () => {
    for (const s of signals) process.off(s, onSignal);
  };
}
