import { ALL_KV_BUCKETS, ALL_STREAMS } from '@dyad/contracts';
import { connectBus, oneAtATime, retryWithBackoff } from '@dyad/bus';
import type { Bus, BusLogger, BusSubscription } from '@dyad/bus';
import type { KubeConfig } from '@kubernetes/client-node';
import { Counter } from 'prom-client';
import type { Registry } from 'prom-client';
import { ensureCalloutKeys } from './keys.ts';
import type { SecretStore } from './keys.ts';
import { secretStore, tokenReviewer } from './kube.ts';
import { authCalloutHandler } from './responder.ts';
import type { TokenReviewer } from './responder.ts';

export interface NatsAuthOptions {
  readonly kubeConfig: KubeConfig;
  /** Where the Dyad ServiceAccounts and the key Secret are (the release namespace). */
  readonly namespace: string;
  readonly secretName: string;
  /** The audience Dyad's projected tokens carry; TokenReviews ask for it alone. */
  readonly audience: string;
  readonly servers: readonly string[];
  readonly caFile?: string | undefined;
  /** Replicas of the streams and buckets the bootstrap identity declares. */
  readonly streamReplicas: number;
  readonly logger: BusLogger;
  readonly registry: Registry;
  /** Replaces the TokenReview (tests without an API server). */
  readonly review?: TokenReviewer;
  /** Replaces the key Secret (tests without an API server). */
  readonly secrets?: SecretStore;
}

export interface NatsAuth {
  /** The callout answers and the streams and buckets are declared. */
  ready(): boolean;
  stop(): Promise<void>;
}

/**
 * dyad-nats-auth: nats-server's auth callout for Dyad's clients, and the bootstrap identity.
 * Keys first (they exist before nats-server can start: its configuration includes their public
 * halves), then the callout's connection, then the bootstrap connection, which declares every
 * stream and bucket, again after each reconnect (a server may have come back without them).
 */
export async function startNatsAuth(o: NatsAuthOptions): Promise<NatsAuth> {
  const keys = await ensureCalloutKeys(
    o.secrets ?? secretStore(o.kubeConfig, o.namespace, o.secretName),
    `Secret ${o.namespace}/${o.secretName}`,
  );
  const seed = (k: { getSeed(): Uint8Array }): string => new TextDecoder().decode(k.getSeed());
  const common = {
    servers: o.servers,
    ...(o.caFile === undefined ? {} : { caFile: o.caFile }),
    logger: o.logger,
    registry: o.registry,
    waitOnFirstConnect: true,
  };
  const requests = new Counter({
    name: 'dyad_nats_auth_requests_total',
    help: 'Auth callout requests answered, by result (admitted, refused, no-token, review-failed, invalid-request)',
    labelNames: ['result'] as const,
    registers: [o.registry],
  });
  const callout: Bus = await connectBus({
    ...common,
    name: 'nats-auth',
    nkeySeed: seed(keys.callout),
  });
  let serving: BusSubscription | undefined;
  let boot: Bus | undefined;
  try {
    serving = callout.serveAuthCallout(
      authCalloutHandler({
        issuer: keys.issuer,
        namespace: o.namespace,
        review: o.review ?? tokenReviewer(o.kubeConfig, o.audience),
        logger: o.logger,
        requests,
      }),
    );
    boot = await connectBus({
      ...common,
      name: 'nats-auth-bootstrap',
      nkeySeed: seed(keys.bootstrap),
      streamReplicas: o.streamReplicas,
    });
  } catch (err) {
    await serving?.stop();
    await callout.close();
    throw err;
  }
  const bootstrapBus = boot;
  let stopping = false;
  let declared = false;
  const declare = oneAtATime(async () => {
    declared = false;
    await retryWithBackoff(
      async () => {
        await bootstrapBus.ensureStreams(ALL_STREAMS);
        await bootstrapBus.ensureKv(ALL_KV_BUCKETS);
        declared = true;
        o.logger.info({}, 'streams and buckets declared');
      },
      {
        policy: { initialMs: 500, maxMs: 10_000 },
        stopped: () => stopping,
        onError: (err, attempt, retryInMs) =>
          o.logger.warn({ err, attempt, retryInMs }, 'streams and buckets not declared yet'),
      },
    );
  });
  declare.trigger();
  const unlisten = bootstrapBus.onReconnect(() => declare.trigger());
  return {
    ready: () => declared && callout.isConnected() && bootstrapBus.isConnected(),
    async stop() {
      stopping = true;
      unlisten();
      await declare.running();
      await serving.stop();
      await Promise.allSettled([bootstrapBus.drain(), callout.drain()]);
    },
  };
}
