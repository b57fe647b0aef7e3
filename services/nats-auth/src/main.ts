// dyad-nats-auth: nats-server's auth callout (ServiceAccount tokens → Dyad identities).
// Settings: config.ts.
import { KubeConfig } from '@kubernetes/client-node';
import { createLogger, createMetrics, startHealthServer } from '@dyad/telemetry';
import { loadConfig } from './config.ts';
import { startNatsAuth } from './service.ts';

async function main(): Promise<void> {
  const cfg = loadConfig(process.env);
  const logger = createLogger({ service: 'nats-auth', level: cfg.logLevel });
  const registry = createMetrics();
  const kc = new KubeConfig();
  if (cfg.kubeconfig === undefined) kc.loadFromCluster();
  else kc.loadFromFile(cfg.kubeconfig);
  const auth = await startNatsAuth({
    kubeConfig: kc,
    namespace: cfg.namespace,
    secretName: cfg.secretName,
    audience: cfg.audience,
    servers: cfg.servers,
    caFile: cfg.caFile,
    logger,
    registry,
  });
  const health = await startHealthServer({
    port: cfg.health.port,
    host: cfg.health.host,
    registry,
    isReady: () => auth.ready(),
  });
  logger.info({ health: health.url, namespace: cfg.namespace }, 'nats-auth up');
  let stopping = false;
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      if (stopping) return;
      stopping = true;
      void (async () => {
        await health.close();
        await auth.stop();
        process.exit(0);
      })();
    });
  }
}

main().catch((err: unknown) => {
  console.error(
    JSON.stringify({
      level: 'fatal',
      service: 'nats-auth',
      msg: 'start-up failed',
      err: String(err),
    }),
  );
  process.exit(1);
});
