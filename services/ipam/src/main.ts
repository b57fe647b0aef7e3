// ipam: the cluster pool - node block sets over NATS. Settings from the environment (settings.ts),
// IPAM keys from DYAD_<KEY> variables or a ConfigMap directory; serves /metrics /healthz /readyz.
import { connectBus, installSignalHandlers } from '@dyad/bus';
import { createLogger, createMetrics, startHealthServer, startTracing } from '@dyad/telemetry';
import { IpamConfigConflictError, IpamConfigError } from './errors.ts';
import { createIpamMetrics } from './metrics.ts';
import { IpamService } from './service.ts';
import { loadSettings } from './settings.ts';

const SERVICE = 'ipam';

async function main(): Promise<void> {
  const cfg = loadSettings(process.env);
  const tracing = startTracing({ service: SERVICE });
  const logger = createLogger({ service: SERVICE, level: cfg.logLevel });
  for (const w of cfg.ipam.warnings) logger.warn({}, w);
  const registry = createMetrics();

  const bus = await connectBus({
    ...cfg.nats,
    name: SERVICE,
    logger,
    registry,
    waitOnFirstConnect: true,
  });
  const metrics = createIpamMetrics(registry);
  const service = () =>
    new IpamService({
      bus,
      config: cfg.ipam,
      logger,
      metrics,
      nodeGraceMs: cfg.nodeGraceMs,
      orphanGraceMs: cfg.orphanGraceMs,
      gcIntervalMs: cfg.gcIntervalMs,
      rebuildWaitMs: cfg.rebuildWaitMs,
      concurrency: cfg.concurrency,
    });
  let ipam = service();
  try {
    await ipam.start();
  } catch (err) {
    await bus.close();
    throw err;
  }
  // A server that comes back may have lost its data (streams, the bucket): after every reconnect
  // ipam starts over, as at start-up: declares what it needs, reads the agents' held reports and
  // the nodes again, and rebuilds what its bucket lost. One restart at a time.
  let restarting: Promise<void> | undefined;
  let again = false;
  const restart = (): void => {
    if (restarting) {
      again = true;
      return;
    }
    restarting = (async () => {
      await ipam.stop();
      for (let attempt = 1; ; attempt++) {
        const next = service();
        try {
          await next.start();
          ipam = next;
          logger.info({ attempt }, 'ipam started over after a reconnect');
          return;
        } catch (err) {
          await next.stop().catch(() => undefined);
          const wait = Math.min(10_000, 250 * 2 ** Math.min(attempt, 6));
          logger.error({ err, attempt, retryInMs: wait }, 'ipam not started over yet; retrying');
          await new Promise((r) => setTimeout(r, wait));
        }
      }
    })().finally(() => {
      restarting = undefined;
      if (again) {
        again = false;
        restart();
      }
    });
  };
  bus.onReconnect(restart);

  const health = await startHealthServer({
    port: cfg.health.port,
    host: cfg.health.host,
    registry,
    isReady: () => ipam.ready,
  });
  logger.info({ health: health.url }, 'ipam started');

  installSignalHandlers(bus, {
    logger,
    beforeDrain: async () => {
      await health.close();
      await restarting;
      await ipam.stop();
    },
    afterDrain: () => tracing.shutdown(),
  });
}

main().catch((err: unknown) => {
  const known = err instanceof IpamConfigError || err instanceof IpamConfigConflictError;
  const line = {
    level: 'fatal',
    service: SERVICE,
    msg: 'start-up failed',
    err: known ? err.message : String(err),
  };
  console.error(JSON.stringify(line));
  process.exit(known ? 2 : 1);
});
