// bootstrap: the one holder of the bootstrap identity. Creates every stream and bucket, and
// creates them again whenever NATS has lost them. Settings from the environment (config.ts).
import { ALL_KV_BUCKETS, ALL_STREAMS } from '@dyad/contracts';
import { runService } from '@dyad/service';
import { BootstrapConfigError, loadConfig } from './config.ts';
import { StreamKeeper } from './keeper.ts';
import { createBootstrapMetrics } from './metrics.ts';

runService({
  name: 'bootstrap',
  loadConfig,
  async start({ cfg, bus, logger, registry }) {
    const keeper = new StreamKeeper({
      bus,
      streams: ALL_STREAMS,
      buckets: ALL_KV_BUCKETS,
      checkIntervalMs: cfg.checkIntervalMs,
      logger,
      metrics: createBootstrapMetrics(registry),
    });
    await keeper.start();
    return {
      ready: () => keeper.healthy,
      stop: () => keeper.stop(),
    };
  },
  failure: (err) =>
    err instanceof BootstrapConfigError ? { code: 2, message: err.message } : undefined,
});
