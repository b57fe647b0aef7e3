// policy: identities from labels and NetworkPolicy compiled per pod, published per node.
// Settings from the environment (config.ts).
import { ALL_STREAMS } from '@dyad/contracts';
import { runService } from '@dyad/service';
import { loadConfig } from './config.ts';
import { createPolicyMetrics } from './metrics.ts';
import { PolicyService } from './service.ts';

runService({
  name: 'policy',
  loadConfig,
  async start({ cfg, bus, logger, registry }) {
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
    return { ready: () => bus.isConnected() && policy.ready, stop: () => policy.stop() };
  },
});
