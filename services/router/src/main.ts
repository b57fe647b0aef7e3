// router: computes every node's ipcache and forwarding entries from NATS inputs and publishes
// them on node-scoped JetStream subjects. Settings from the environment (config.ts).
import { ALL_STREAMS } from '@dyad/contracts';
import { runService } from '@dyad/service';
import { loadConfig } from './config.ts';
import { createRouterMetrics } from './metrics.ts';
import { RouterService } from './service.ts';
import { busRouterPort } from './stream-port.ts';

runService({
  name: 'router',
  loadConfig,
  async start({ cfg, bus, logger, registry }) {
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
    return {
      ready: () => bus.isConnected() && router.ready,
      stop: () => router.stop(),
      startedFields: { revision: router.revision },
    };
  },
});
