// ipam: the cluster pool - node block sets over NATS. Settings from the environment (settings.ts),
// IPAM keys from DYAD_<KEY> variables or a ConfigMap directory; serves /metrics /healthz /readyz.
import { connectBus, installSignalHandlers, oneAtATime, retryWithBackoff } from '@dyad/bus';
import { createLogger, createMetrics, startHealthServer, startTracing } from '@dyad/telemetry';
import { IpamConfigConflictError, IpamConfigError } from './errors.ts';
import { createIpamMetrics } from './metrics.ts';
import { IpamService } from './service.ts';
import { loadSettings } from './settings.ts';

const SERVICE = 'ipam';

async function main(): Promise<void> {
  const cfg = loadSettings(process.env);
  const tracing = await startTracing({ service: SERVICE });
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
  const restart = oneAtATime(async () => {
    await ipam.stop();
    await retryWithBackoff(
      async (attempt) => {
        const next = service();
        try {
          await next.start();
        } catch (err) {
          await next.stop().catch(() => undefined);
          throw err;
        }
        ipam = next;
        logger.info({ attempt }, 'ipam started over after a reconnect');
      },
      {
        policy: { initialMs: 250, maxMs: 10_000 },
        onError: (err, attempt, retryInMs) =>
          logger.error({ err, attempt, retryInMs }, 'ipam not started over yet; retrying'),
      },
    );
  });
  bus.onReconnect(restart.trigger);

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
      await restart.running();
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
