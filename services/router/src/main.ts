// router: computes every node's ipcache and forwarding entries from NATS inputs and publishes
// them on node-scoped JetStream subjects. Settings from the environment (config.ts).
import { ALL_STREAMS } from '@dyad/contracts';
import { runService, startOverOnReconnect } from '@dyad/service';
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
    // one set of metrics for every instance (a registry takes each name once)
    const metrics = createRouterMetrics(registry);
    // After a reconnect, a new RouterService reads every input again and republishes every
    // node's state: the server may have lost the router's stream (@dyad/service, start-over.ts).
    const make = () =>
      new RouterService({
        bus,
        port: busRouterPort(bus),
        logger,
        metrics,
        tombstoneTtl: cfg.tombstoneTtl,
        flushDelayMs: cfg.flushDelayMs,
        resyncIntervalMs: cfg.resyncIntervalMs,
        publishConcurrency: cfg.publishConcurrency,
      });
    const router = await startOverOnReconnect(bus, make, logger);
    return {
      ready: () => bus.isConnected() && router.current().ready,
      stop: () => router.stop(),
      startedFields: { revision: router.current().revision },
    };
  },
});
