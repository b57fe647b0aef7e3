import { connectBus, installSignalHandlers } from '@dyad/bus';
import type { Bus, NatsSettings } from '@dyad/bus';
import { createLogger, createMetrics, startHealthServer, startTracing } from '@dyad/telemetry';
import type { HealthServer, Logger, LoggerOptions, Registry } from '@dyad/telemetry';

/** What every service's configuration carries, whatever else it holds. */
export interface ServiceConfig {
  readonly nats: NatsSettings;
  /** host undefined: every address of both families. */
  readonly health: { readonly host: string | undefined; readonly port: number };
  readonly logLevel: LoggerOptions['level'];
}

/** What a service's start gets: its configuration and the shared pieces, already made. */
export interface ServiceContext<C extends ServiceConfig> {
  readonly cfg: C;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly bus: Bus;
}

/** A started service, as the start-up helper drives it. */
export interface RunningService {
  /** Answers /readyz. */
  ready(): boolean;
  /** Stops the service's own work; runs before the bus drains. */
  stop(): Promise<void>;
  /** Extra fields for the "started" log line. */
  readonly startedFields?: Readonly<Record<string, unknown>>;
}

export interface ServiceSpec<C extends ServiceConfig> {
  /** Service name: logs, traces, the NATS connection, CloudEvents source, dead letters. */
  readonly name: string;
  /** Reads the environment; throws on anything wrong (before anything starts). */
  loadConfig(env: NodeJS.ProcessEnv): C;
  start(ctx: ServiceContext<C>): Promise<RunningService>;
  /** The exit code and message of a start-up failure this service knows; default 1, String(err). */
  failure?(err: unknown): { readonly code: number; readonly message: string } | undefined;
}

export interface StartOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** What the signal handlers call to exit; default process.exit. */
  readonly exit?: (code: number) => void;
  /** The signals that shut the service down; default SIGTERM and SIGINT. */
  readonly signals?: readonly NodeJS.Signals[];
}

export interface StartedService {
  readonly bus: Bus;
  readonly health: HealthServer;
  readonly running: RunningService;
  /** Removes the signal handlers (tests). */
  readonly uninstall: () => void;
}

/**
 * Starts a service the way every Dyad service starts: configuration first (nothing runs when it
 * is wrong), then tracing, logger and metrics, the bus (waiting for the first connection), the
 * service itself, the health server, and handlers that on SIGTERM/SIGINT close the health server,
 * stop the service, drain the bus and flush tracing.
 */
export async function startService<C extends ServiceConfig>(
  spec: ServiceSpec<C>,
  opts: StartOptions = {},
): Promise<StartedService> {
  const cfg = spec.loadConfig(opts.env ?? process.env);
  const tracing = await startTracing({
    service: spec.name,
    ...(opts.env === undefined ? {} : { env: opts.env }),
  });
  const logger = createLogger({ service: spec.name, level: cfg.logLevel });
  const registry = createMetrics();
  let bus: Bus | undefined;
  let running: RunningService;
  try {
    bus = await connectBus({
      ...cfg.nats,
      name: spec.name,
      logger,
      registry,
      waitOnFirstConnect: true,
    });
    running = await spec.start({ cfg, logger, registry, bus });
  } catch (err) {
    await bus?.close();
    await tracing.shutdown();
    throw err;
  }
  const health = await startHealthServer({
    port: cfg.health.port,
    host: cfg.health.host,
    registry,
    isReady: () => running.ready(),
  });
  logger.info({ health: health.url, ...running.startedFields }, `${spec.name} up`);
  const uninstall = installSignalHandlers(bus, {
    logger,
    beforeDrain: async () => {
      await health.close();
      await running.stop();
    },
    afterDrain: () => tracing.shutdown(),
    ...(opts.exit === undefined ? {} : { exit: opts.exit }),
    ...(opts.signals === undefined ? {} : { signals: opts.signals }),
  });
  return { bus, health, running, uninstall };
}

/** `startService` as a process's main: a start-up failure is one fatal JSON line and an exit. */
export function runService<C extends ServiceConfig>(spec: ServiceSpec<C>): void {
  startService(spec).catch((err: unknown) => {
    const known = spec.failure?.(err);
    const line = {
      level: 'fatal',
      service: spec.name,
      msg: 'start-up failed',
      err: known?.message ?? String(err),
    };
    console.error(JSON.stringify(line));
    process.exit(known?.code ?? 1);
  });
}
