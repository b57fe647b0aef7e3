// router: computes every node's ipcache and forwarding entries from NATS inputs and publishes
// them on node-scoped JetStream subjects. Settings from the environment (config.ts).
import { ALL_STREAMS } from '@dyad/contracts';
import { connectBus, installSignalHandlers } from '@dyad/bus';
import { createLogger, createMetrics, startHealthServer, startTracing } from '@dyad/telemetry';
import { loadConfig } from './config.ts';
import { createRouterMetrics } from './metrics.ts';
import { RouterService } from './service.ts';
import { busRouterPort } from './stream-port.ts';

const SERVICE = 'router';

async function main(): Promise<void> {
  const cfg = loadConfig(process.env);
  const tracing = await startTracing({ service: SERVICE });
  const logger = createLogger({ service: SERVICE, level: cfg.logLevel });
  const registry = createMetrics();
  const bus = await connectBus({
    ...cfg.nats,
    name: SERVICE,
    logger,
    registry,
    waitOnFirstConnect: true,
  });
  // Inputs may start after the router: their streams must exist for its consumers.
  await bus.ensureStreams(ALL_STREAMS);
  const router = new RouterService({
    bus,
    port: busRouterPort(bus),
    logger,
    metrics: createRouterMetrics(registry),
    tombstoneTtl: cfg.tombstoneTtl,
    flushDelayMs: cfg.flushDelayMs,
    resyncIntervalMs: cfg.resyncIntervalMs,
    publishConcurrency: cfg.publishConcurrency,
  });
  await router.start();
  const health = await startHealthServer({
    port: cfg.health.port,
    host: cfg.health.host,
    registry,
    isReady: () => bus.isConnected() && router.ready,
  });
  logger.info({ health: health.url, revision: router.revision }, 'router ready');
  installSignalHandlers(bus, {
    logger,
    beforeDrain: async () => {
      await health.close();
      await router.stop();
    },
    afterDrain: () => tracing.shutdown(),
  });
}

main().catch((err: unknown) => {
  console.error(
    JSON.stringify({ level: 'fatal', service: SERVICE, msg: 'start-up failed', err: String(err) }),
  );
  process.exit(1);
});
