import { connectBus } from '@dyad/bus';
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
  readonly logger: BusLogger;
  readonly registry: Registry;
  /** Replaces the TokenReview (tests without an API server). */
  readonly review?: TokenReviewer;
  /** Replaces the key Secret (tests without an API server). */
  readonly secrets?: SecretStore;
}

export interface NatsAuth {
  /** The callout is connected and answers. */
  ready(): boolean;
  stop(): Promise<void>;
}

/**
 * dyad-nats-auth: nats-server's auth callout for Dyad's clients. Keys first (they exist before
 * nats-server can start: its configuration includes their public halves), then the callout's
 * connection. Streams and buckets are the bootstrap service's (services/bootstrap), which
 * connects through this callout like every other Dyad process.
 */
export async function startNatsAuth(o: NatsAuthOptions): Promise<NatsAuth> {
  const keys = await ensureCalloutKeys(
    o.secrets ?? secretStore(o.kubeConfig, o.namespace, o.secretName),
    `Secret ${o.namespace}/${o.secretName}`,
  );
  const seed = (k: { getSeed(): Uint8Array }): string => new TextDecoder().decode(k.getSeed());
  const requests = new Counter({
    name: 'dyad_nats_auth_requests_total',
    help: 'Auth callout requests answered, by result (admitted, refused, no-token, review-failed, invalid-request)',
    labelNames: ['result'] as const,
    registers: [o.registry],
  });
  const callout: Bus = await connectBus({
    servers: o.servers,
    ...(o.caFile === undefined ? {} : { caFile: o.caFile }),
    logger: o.logger,
    registry: o.registry,
    waitOnFirstConnect: true,
    name: 'nats-auth',
    nkeySeed: seed(keys.callout),
  });
  let serving: BusSubscription;
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
  } catch (err) {
    await callout.close();
    throw err;
  }
  return {
    ready: () => callout.isConnected(),
    async stop() {
      await serving.stop();
      await callout.drain();
    },
  };
}
