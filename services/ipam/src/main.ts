// ipam: the cluster pool - node block sets over NATS. Settings from the environment (settings.ts),
// IPAM keys from DYAD_<KEY> variables or a ConfigMap directory; serves /metrics /healthz /readyz.
import { oneAtATime, retryWithBackoff } from '@dyad/bus';
import { runService } from '@dyad/service';
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
    let ipam = service();
    await ipam.start();
    // A server that comes back may have lost its data (streams, the bucket): after every
    // reconnect ipam starts over, as at start-up: declares what it needs, reads the agents' held
    // reports and the nodes again, and rebuilds what its bucket lost. One restart at a time.
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
    return {
      ready: () => ipam.ready,
      stop: async () => {
        await restart.running();
        await ipam.stop();
      },
    };
  },
  failure: (err) =>
    err instanceof IpamConfigError || err instanceof IpamConfigConflictError
      ? { code: 2, message: err.message }
      : undefined,
});
