// kube-bridge: the one component that watches Kubernetes. Reads its settings from the
// environment (see config.ts), mirrors six kinds into JetStream, serves /metrics /healthz /readyz.
import { KubeConfig } from '@kubernetes/client-node';
import { ALL_STREAMS } from '@dyad/contracts';
import { connectBus, installSignalHandlers } from '@dyad/bus';
import { createLogger, createMetrics, startHealthServer, startTracing } from '@dyad/telemetry';
import { KubeBridge } from './bridge.ts';
import { loadConfig } from './config.ts';
import { watchedKinds } from './kinds.ts';
import { createBridgeMetrics } from './metrics.ts';
import { PolicyEventReporter, apiEventSink } from './policy-events.ts';
import { busStreamPort } from './stream-port.ts';

const SERVICE = 'kube-bridge';

async function main(): Promise<void> {
  const cfg = loadConfig(process.env);
  const tracing = await startTracing({ service: SERVICE });
  const logger = createLogger({ service: SERVICE, level: cfg.logLevel as 'info' });
  const registry = createMetrics();

  const kc = new KubeConfig();
  if (cfg.kubeconfig === undefined) kc.loadFromCluster();
  else kc.loadFromFile(cfg.kubeconfig);

  const bus = await connectBus({
    ...cfg.nats,
    name: SERVICE,
    logger,
    registry,
    waitOnFirstConnect: true,
  });
  await bus.ensureStreams(ALL_STREAMS);

  const bridge = new KubeBridge({
    kubeConfig: kc,
    kinds: watchedKinds(kc),
    stream: busStreamPort(bus, (err) =>
      logger.warn({ err }, 'stream not declared again after a reconnect; the next resync retries'),
    ),
    logger,
    metrics: createBridgeMetrics(registry),
    resyncIntervalMs: cfg.resyncIntervalMs,
    tombstoneTtlMs: cfg.tombstoneTtlMs,
  });
  bridge.start();
  const events =
    cfg.events === undefined
      ? undefined
      : new PolicyEventReporter({
          bus,
          sink: apiEventSink(kc),
          logger,
          instance: cfg.events.instance,
        });
  await events?.start();

  const health = await startHealthServer({
    port: cfg.health.port,
    host: cfg.health.host,
    registry,
    isReady: () => bus.isConnected() && bridge.synced,
  });
  logger.info(
    { health: health.url, server: kc.getCurrentCluster()?.server },
    'kube-bridge started',
  );

  installSignalHandlers(bus, {
    logger,
    beforeDrain: async () => {
      await health.close();
      await events?.stop();
      await bridge.stop();
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
