// ipam: the cluster pool - node block sets over NATS. Settings from the environment (settings.ts),
// IPAM keys from DYAD_<KEY> variables or a ConfigMap directory; serves /metrics /healthz /readyz.
import { runService, startOverOnReconnect } from '@dyad/service';
import { IpamConfigConflictError, IpamConfigError } from './errors.ts';
import { createIpamMetrics } from './metrics.ts';
import { IpamService } from './service.ts';
import { loadSettings } from './settings.ts';

runService({
  name: 'ipam',
  loadConfig: loadSettings,
  async start({ cfg, bus, logger, registry }) {
    for (const w of cfg.ipam.warnings) logger.warn({}, w);
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
    // A server that comes back may have lost its data (streams, the bucket): ipam declares what
    // it needs, reads the agents' held reports and the nodes again, and rebuilds what its bucket
    // lost.
    const ipam = await startOverOnReconnect(bus, service, logger);
    return { ready: () => ipam.current().ready, stop: () => ipam.stop() };
  },
  failure: (err) =>
    err instanceof IpamConfigError || err instanceof IpamConfigConflictError
      ? { code: 2, message: err.message }
      : undefined,
});
