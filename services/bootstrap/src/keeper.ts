import type { Bus, EnsureResult } from '@dyad/bus';
import { oneAtATime, retryWithBackoff } from '@dyad/bus';
import type { KvBucketSpec, StreamSpec } from '@dyad/contracts';
import type { Logger } from '@dyad/telemetry';
import type { BootstrapMetrics } from './metrics.ts';

export interface KeeperOptions {
  readonly bus: Pick<Bus, 'ensureStreams' | 'ensureKv' | 'onReconnect'>;
  readonly streams: readonly StreamSpec[];
  readonly buckets: readonly KvBucketSpec[];
  /** A full check this often, besides the one after every reconnect. */
  readonly checkIntervalMs: number;
  readonly logger: Logger;
  readonly metrics: BootstrapMetrics;
}

/**
 * Keeps every stream and bucket in existence with its declared configuration. Only this
 * identity may create them, so it is the one that notices when NATS lost them: the whole cluster
 * restarting empty makes every client reconnect (a check at once, retried while JetStream elects
 * its leader), and anything else (a stream deleted by hand, a server restored from an old
 * backup) is found by the periodic check. The writers then republish what they own into the
 * recreated streams, each on its own reconnect.
 */
export class StreamKeeper {
  readonly #o: KeeperOptions;
  #checked = false;
  #healthy = false;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  #offReconnect: () => void = () => undefined;
  readonly #check = oneAtATime(() => this.#checkUntilDone());

  constructor(o: KeeperOptions) {
    this.#o = o;
  }

  /** True while the last check found (or made) everything. */
  get healthy(): boolean {
    return this.#healthy;
  }

  /** Resolves after the first successful check: everything exists. */
  async start(): Promise<void> {
    await this.#checkUntilDone();
    this.#offReconnect = this.#o.bus.onReconnect(() => {
      this.#healthy = false;
      this.#check.trigger();
    });
    this.#timer = setInterval(() => this.#check.trigger(), this.#o.checkIntervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#offReconnect();
    clearInterval(this.#timer);
    await this.#check.running();
  }

  /** One check: what is missing is created, what differs updated. */
  async checkOnce(): Promise<EnsureResult[]> {
    const { bus, metrics, logger } = this.#o;
    const results = [
      ...(await bus.ensureStreams(this.#o.streams)),
      ...(await bus.ensureKv(this.#o.buckets)),
    ];
    const created = results.filter((r) => r.action === 'created').map((r) => r.name);
    for (const name of created) metrics.created.inc({ stream: name });
    // At start-up, creating is the job; later it means NATS lost them.
    if (created.length > 0 && this.#checked)
      logger.warn({ recreated: created }, 'streams and buckets were missing: recreated');
    this.#checked = true;
    return results;
  }

  async #checkUntilDone(): Promise<void> {
    await retryWithBackoff(
      async () => {
        await this.checkOnce();
        this.#healthy = true;
        this.#o.metrics.checks.inc({ outcome: 'ok' });
      },
      {
        policy: { initialMs: 250, maxMs: 5000 },
        stopped: () => this.#stopped,
        onError: (err, attempt, retryInMs) => {
          this.#healthy = false;
          this.#o.metrics.checks.inc({ outcome: 'error' });
          this.#o.logger.warn({ err, attempt, retryInMs }, 'stream check failed; retrying');
        },
      },
    );
  }
}
