// kube-bridge: the one component that watches Kubernetes. Reads its settings from the
// environment (see config.ts), mirrors six kinds into JetStream, serves /metrics /healthz /readyz.
import { KubeConfig } from '@kubernetes/client-node';
import { ALL_STREAMS } from '@dyad/contracts';
import { runService } from '@dyad/service';
import { KubeBridge } from './bridge.ts';
import { loadConfig } from './config.ts';
import { watchedKinds } from './kinds.ts';
import { createBridgeMetrics } from './metrics.ts';
import { PolicyEventReporter, apiEventSink } from './policy-events.ts';
import { busStreamPort } from './stream-port.ts';

runService({
  name: 'kube-bridge',
  loadConfig,
  async start({ cfg, bus, logger, registry }) {
    const kc = new KubeConfig();
    if (cfg.kubeconfig === undefined) kc.loadFromCluster();
    else kc.loadFromFile(cfg.kubeconfig);
    await bus.ensureStreams(ALL_STREAMS);
    const bridge = new KubeBridge({
      kubeConfig: kc,
      kinds: watchedKinds(kc),
      stream: busStreamPort(bus, (err) =>
        logger.warn(
          { err },
          'stream not declared again after a reconnect; the next resync retries',
        ),
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
    return {
      ready: () => bus.isConnected() && bridge.synced,
      stop: async () => {
        await events?.stop();
        await bridge.stop();
      },
      startedFields: { server: kc.getCurrentCluster()?.server },
    };
  },
});
