// policy: identities from labels and NetworkPolicy compiled per pod, published per node.
// Settings from the environment (config.ts).
import { ALL_STREAMS } from '@dyad/contracts';
import { runService, startOverOnReconnect } from '@dyad/service';
import { loadConfig } from './config.ts';
import { createPolicyMetrics } from './metrics.ts';
import { PolicyService } from './service.ts';

runService({
  name: 'policy',
  loadConfig,
  async start({ cfg, bus, logger, registry }) {
    // Inputs may start after the policy service: their streams must exist for its consumers.
    await bus.ensureStreams(ALL_STREAMS);
    // one set of metrics for every instance (a registry takes each name once)
    const metrics = createPolicyMetrics(registry);
    // After a reconnect, a new PolicyService reads its inputs and stored outputs again and
    // republishes what differs: the server may have lost them (@dyad/service, start-over.ts).
    const make = () =>
      new PolicyService({
        bus,
        logger,
        metrics,
        tombstoneTtl: cfg.tombstoneTtl,
        flushDelayMs: cfg.flushDelayMs,
        resyncIntervalMs: cfg.resyncIntervalMs,
        identityGraceMs: cfg.identityGraceMs,
        identityGcIntervalMs: cfg.identityGcIntervalMs,
        allowHost: cfg.allowHost,
      });
    const policy = await startOverOnReconnect(bus, make, logger);
    return { ready: () => bus.isConnected() && policy.current().ready, stop: () => policy.stop() };
  },
});
