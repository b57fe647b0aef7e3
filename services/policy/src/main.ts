// policy: identities from labels and NetworkPolicy compiled per pod, published per node.
// Settings from the environment (config.ts).
import { ALL_STREAMS } from '@dyad/contracts';
import { connectBus, installSignalHandlers } from '@dyad/bus';
import { createLogger, createMetrics, startHealthServer, startTracing } from '@dyad/telemetry';
import { loadConfig } from './config.ts';
import { createPolicyMetrics } from './metrics.ts';
import { PolicyService } from './service.ts';

const SERVICE = 'policy';

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
  // Inputs may start after the policy service: their streams must exist for its consumers.
  await bus.ensureStreams(ALL_STREAMS);
  const policy = new PolicyService({
    bus,
    logger,
    metrics: createPolicyMetrics(registry),
    tombstoneTtl: cfg.tombstoneTtl,
    flushDelayMs: cfg.flushDelayMs,
    resyncIntervalMs: cfg.resyncIntervalMs,
    identityGraceMs: cfg.identityGraceMs,
    identityGcIntervalMs: cfg.identityGcIntervalMs,
    allowHost: cfg.allowHost,
  });
  await policy.start();
  const health = await startHealthServer({
    port: cfg.health.port,
    host: cfg.health.host,
    registry,
    isReady: () => bus.isConnected() && policy.ready,
  });
  logger.info({ health: health.url }, 'policy ready');
  installSignalHandlers(bus, {
    logger,
    beforeDrain: async () => {
      await health.close();
      await policy.stop();
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
