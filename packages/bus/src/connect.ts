import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { inboxPrefix } from '@dyad/contracts';
import type { KvBucketSpec, MessageContract, PayloadOf, StreamSpec } from '@dyad/contracts';
import { trace } from '@opentelemetry/api';
import type { Tracer } from '@opentelemetry/api';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { JetStreamManager, PubAck } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import {
  connect,
  errors,
  nkeyAuthenticator,
  nkeys,
  tokenAuthenticator,
} from '@nats-io/transport-node';
import type { NatsConnection, NodeConnectionOptions, Status } from '@nats-io/transport-node';
import type { Registry } from 'prom-client';
import type { AuthCalloutHandler, AuthCalloutOptions } from './auth-callout.ts';
import { serveAuthCallout } from './auth-callout.ts';
import type { EnsureResult } from './bootstrap.ts';
import { ensureKv, ensureStreams, purgeSubjects } from './bootstrap.ts';
import { kvBucket } from './kv.ts';
import type { KvBucket } from './kv.ts';
import type { BusConsumer, ConsumeOptions } from './consume.ts';
import { consume } from './consume.ts';
import type { BusContext, BusLogger } from './context.ts';
import { ConnectError } from './errors.ts';
import { seedFromCreds } from './creds.ts';
import { coalesceWrites } from './coalesce.ts';
import type { CoalescedWrites } from './coalesce.ts';
import type { Delivery, Handler, JsDelivery } from './inbound.ts';
import { busMetrics } from './metrics.ts';
import type { InputOf, JsPublishOptions, PublishOptions } from './publish.ts';
import { jsPublish, publish } from './publish.ts';
import type { RequestOptions, ServeHandler, ServeOptions } from './request.ts';
import { request, serve } from './request.ts';
import type { SnapshotEach, SnapshotOptions, SnapshotRead } from './snapshot.ts';
import { snapshot, snapshotEach } from './snapshot.ts';
import type { BusSubscription, SubscribeOptions } from './subscribe.ts';
import { subscribe } from './subscribe.ts';
import { telemetryPublisher } from './telemetry-publisher.ts';
import type { TelemetryPublisher, TelemetryPublisherOptions } from './telemetry-publisher.ts';

export interface ReconnectOptions {
  /** Attempts before giving up; -1 (the default) retries forever. */
  readonly maxAttempts?: number;
  /** Wait between attempts on one server. Default 1000 ms. */
  readonly timeWaitMs?: number;
  /** Up to this much random extra wait, so a fleet does not reconnect in lockstep. Default 500 ms. */
  readonly jitterMs?: number;
}

export interface BusOptions {
  readonly servers: string | readonly string[];
  /** The service name: connection name, CloudEvents source `/dyad/<name>`, dead-letter subject. */
  readonly name: string;
  readonly user?: string;
  readonly pass?: string;
  readonly token?: string;
  /** The identity's NKey seed file (see credsFileText): its permissions are the server's. */
  readonly credsFile?: string;
  /** The NKey seed itself, for a process that reads it from elsewhere than a file. */
  readonly nkeySeed?: string;
  /**
   * A file holding the token to present, read again on every connect and reconnect: a projected
   * Kubernetes ServiceAccount token, which the kubelet rotates, checked by the auth callout.
   */
  readonly tokenFile?: string;
  /**
   * The identity the auth callout gives this process's token (`agent-node-1`, `ipam`): its
   * inbox prefix is named by it (contracts' inboxPrefix). Required with tokenFile.
   */
  readonly identity?: string;
  /** Connect over TLS, trusting servers whose certificate this CA signed. */
  readonly caFile?: string;
  readonly logger: BusLogger;
  readonly registry: Registry;
  readonly reconnect?: ReconnectOptions;
  /** Keep retrying the very first connect instead of failing. Default false. */
  readonly waitOnFirstConnect?: boolean;
  readonly connectTimeoutMs?: number;
  /** Socket writes once per event-loop turn instead of once per message (default true). */
  readonly coalesceWrites?: boolean;
  /**
   * Replicas of the streams and KV buckets `ensureStreams` / `ensureKv` declare (default 1); an
   * existing one with another count is updated to it. At most the number of JetStream servers.
   */
  readonly streamReplicas?: number;
  /** Defaults to the global tracer provider's `@dyad/bus` tracer. */
  readonly tracer?: Tracer;
}

/** A typed connection to NATS. Every message in and out goes through a contract. */
export interface Bus {
  readonly service: string;
  /** CloudEvents source of this service's messages. */
  readonly source: string;
  /** False while disconnected (reconnecting) or after close; use it for readiness. */
  isConnected(): boolean;
  /**
   * Calls `listener` after every reconnect (not the first connect); returns the unsubscribe.
   * A server that came back may have lost its data: last-value state is worth checking again.
   */
  onReconnect(listener: () => void): () => void;

  publish<C extends MessageContract>(
    contract: C,
    subject: string,
    payload: InputOf<C>,
    opts?: PublishOptions,
  ): void;
  jsPublish<C extends MessageContract>(
    contract: C,
    subject: string,
    payload: InputOf<C>,
    opts?: JsPublishOptions,
  ): Promise<PubAck>;

  subscribe<C extends MessageContract>(
    accepted: readonly C[],
    subject: string,
    handler: Handler<PayloadOf<C>, Delivery<PayloadOf<C>>>,
    opts?: SubscribeOptions,
  ): BusSubscription;
  consume<C extends MessageContract>(
    accepted: readonly C[],
    opts: ConsumeOptions,
    handler: Handler<PayloadOf<C>, JsDelivery<PayloadOf<C>>>,
  ): Promise<BusConsumer>;

  /** Last value per subject of a stream, decoded; see SnapshotOptions. */
  snapshot<C extends MessageContract>(
    accepted: readonly C[],
    opts: SnapshotOptions,
  ): Promise<Map<string, JsDelivery<PayloadOf<C>>>>;
  /**
   * The same last values, each handed to `each` as it is read, never all held at once: for state
   * that grows with the cluster. See SnapshotEach.
   */
  snapshotEach<C extends MessageContract>(
    accepted: readonly C[],
    opts: SnapshotOptions,
    each: SnapshotEach<PayloadOf<C>>,
  ): Promise<SnapshotRead>;

  request<Req extends MessageContract, Rep extends MessageContract>(
    reqContract: Req,
    subject: string,
    payload: InputOf<Req>,
    replyContract: Rep,
    opts?: RequestOptions,
  ): Promise<PayloadOf<Rep>>;
  serve<Req extends MessageContract, Rep extends MessageContract>(
    reqContract: Req,
    subject: string,
    handler: ServeHandler<PayloadOf<Req>, InputOf<Rep>>,
    replyContract: Rep,
    opts?: ServeOptions<PayloadOf<Req>>,
  ): BusSubscription;

  /**
   * Removes every message of `stream` on subjects matching `filter` (one wildcard filter), e.g. a
   * deleted node's records; resolves with how many went. A stream that does not exist holds
   * nothing: 0.
   */
  purgeSubjects(stream: string, filter: string): Promise<number>;

  ensureStreams(specs: readonly StreamSpec[]): Promise<EnsureResult[]>;
  ensureKv(specs: readonly KvBucketSpec[]): Promise<EnsureResult[]>;
  /** The bucket (it must exist: see ensureKv), as Dyad's stores use it. */
  kv(bucket: string): Promise<KvBucket>;

  /** Answers nats-server's auth callout requests (the callout service only; see auth-callout.ts). */
  serveAuthCallout(handler: AuthCalloutHandler, opts?: AuthCalloutOptions): BusSubscription;

  /** A bounded core-NATS publisher for high-rate telemetry (flows); see telemetry-publisher.ts. */
  telemetryPublisher<C extends MessageContract>(
    contract: C,
    opts: TelemetryPublisherOptions,
  ): TelemetryPublisher<PayloadOf<C>>;

  /** Round trip to the server: everything published before it has reached the server. */
  flush(): Promise<void>;
  /** Stops every subscription and consumer, waits for handlers in flight, flushes, closes. */
  drain(): Promise<void>;
  /** Closes at once; handlers in flight may fail to ack or reply. */
  close(): Promise<void>;
  /** Resolves when the connection has closed for good. */
  readonly closed: Promise<void>;
}

export async function connectBus(opts: BusOptions): Promise<Bus> {
  const natsOpts: NodeConnectionOptions = {
    servers: typeof opts.servers === 'string' ? opts.servers : [...opts.servers],
    name: opts.name,
    maxReconnectAttempts: opts.reconnect?.maxAttempts ?? -1,
    reconnectTimeWait: opts.reconnect?.timeWaitMs ?? 1000,
    reconnectJitter: opts.reconnect?.jitterMs ?? 500,
    waitOnFirstConnect: opts.waitOnFirstConnect ?? false,
    // nats.js builds two Error objects (stack captured) per request for async stack traces;
    // at thousands of requests per second that was a fifth of a service's CPU. Our errors carry
    // the subject and the span instead.
    noAsyncTraces: true,
    ...(opts.connectTimeoutMs === undefined ? {} : { timeout: opts.connectTimeoutMs }),
    ...(opts.user === undefined ? {} : { user: opts.user }),
    ...(opts.pass === undefined ? {} : { pass: opts.pass }),
    ...(opts.token === undefined ? {} : { token: opts.token }),
  };
  const seed =
    opts.credsFile === undefined
      ? opts.nkeySeed
      : seedFromCreds(await readFile(opts.credsFile, 'utf8'), opts.credsFile);
  if (seed !== undefined) {
    natsOpts.authenticator = nkeyAuthenticator(new TextEncoder().encode(seed));
    natsOpts.inboxPrefix = inboxPrefix(
      nkeys.fromSeed(new TextEncoder().encode(seed)).getPublicKey(),
    );
  } else if (opts.tokenFile !== undefined) {
    if (opts.identity === undefined) {
      throw new ConnectError('a token file needs the identity it stands for (its inbox prefix)');
    }
    const tokenFile = opts.tokenFile;
    // read on every (re)connect: the kubelet replaces the file before the token expires
    natsOpts.authenticator = tokenAuthenticator(() => readFileSync(tokenFile, 'utf8').trim());
    natsOpts.inboxPrefix = inboxPrefix(opts.identity);
  }
  if (opts.caFile !== undefined) natsOpts.tls = { caFile: opts.caFile };
  let nc: NatsConnection;
  try {
    nc = await connect(natsOpts);
  } catch (err) {
    throw new ConnectError(
      `cannot connect to NATS at ${String(natsOpts.servers)}: ${String(err)}`,
      { cause: err },
    );
  }
  let coalesced: CoalescedWrites | undefined;
  if (opts.coalesceWrites ?? true) {
    coalesced = coalesceWrites(nc);
    if (coalesced === undefined) {
      opts.logger.warn({}, 'nats.js internals changed: socket writes are not coalesced');
    }
  }
  const metrics = busMetrics(opts.registry);
  const ctx: BusContext = {
    nc,
    service: opts.name,
    source: `/dyad/${opts.name}`,
    logger: opts.logger,
    metrics,
    tracer: opts.tracer ?? trace.getTracer('@dyad/bus'),
    workers: new Set(),
  };
  let connected = true;
  const reconnectListeners = new Set<() => void>();
  opts.logger.info({ server: nc.getServer() }, 'connected to NATS');
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') connected = false;
      if (s.type === 'reconnect') connected = true;
      logStatus(ctx, s);
      if (s.type === 'reconnect') for (const l of reconnectListeners) l();
    }
  })();
  const closed = nc.closed().then((err) => {
    connected = false;
    if (err instanceof Error) opts.logger.error({ err }, 'NATS connection closed with an error');
    else opts.logger.info({}, 'NATS connection closed');
  });

  const js = jetstream(nc);
  let jsmPromise: Promise<JetStreamManager> | undefined;
  const jsm = (): Promise<JetStreamManager> => {
    jsmPromise ??= jetstreamManager(nc).catch((err: unknown) => {
      jsmPromise = undefined;
      throw err;
    });
    return jsmPromise;
  };

  const drain = async (): Promise<void> => {
    if (nc.isClosed() || nc.isDraining()) return closed;
    await Promise.allSettled([...ctx.workers].map((w) => w.stop()));
    await nc.drain();
    await closed;
  };

  return {
    service: ctx.service,
    source: ctx.source,
    isConnected: () => connected && !nc.isClosed(),
    onReconnect: (listener) => {
      reconnectListeners.add(listener);
      return () => reconnectListeners.delete(listener);
    },
    publish: (contract, subject, payload, o) => publish(ctx, contract, subject, payload, o),
    jsPublish: (contract, subject, payload, o) => jsPublish(ctx, js, contract, subject, payload, o),
    subscribe: (accepted, subject, handler, o) => subscribe(ctx, accepted, subject, handler, o),
    consume: (accepted, o, handler) => consume(ctx, js, jsm, accepted, o, handler),
    snapshot: async (accepted, o) => snapshot(ctx, js, await jsm(), accepted, o),
    snapshotEach: async (accepted, o, each) =>
      snapshotEach(ctx, js, await jsm(), accepted, o, each),
    request: (req, subject, payload, rep, o) => request(ctx, req, subject, payload, rep, o),
    serve: (req, subject, handler, rep, o) => serve(ctx, req, subject, handler, rep, o),
    serveAuthCallout: (handler, o) => serveAuthCallout(ctx, handler, o),
    purgeSubjects: async (stream, filter) => purgeSubjects(await jsm(), stream, filter),
    telemetryPublisher: (contract, o) =>
      telemetryPublisher(ctx, contract, () => connected && !nc.isClosed(), o),
    ensureStreams: async (specs) =>
      ensureStreams(await jsm(), specs, opts.logger, opts.streamReplicas ?? 1),
    ensureKv: async (specs) =>
      ensureKv(js, await jsm(), specs, opts.logger, opts.streamReplicas ?? 1),
    kv: async (bucket) => kvBucket(await new Kvm(js).open(bucket), bucket),
    // Not a worker: drain stops workers first, and in-flight handlers still need their writes.
    flush: () => nc.flush(),
    drain,
    close: async () => {
      // What was published in this turn still leaves: nats.js's close() writes nothing more.
      coalesced?.flushNow();
      await nc.close();
      await closed;
    },
    closed,
  };
}

function logStatus(ctx: BusContext, s: Status): void {
  if (s.type === 'ping') return;
  ctx.metrics.statusEvents.inc({ type: s.type });
  const fields = { status: s };
  switch (s.type) {
    case 'disconnect':
      ctx.logger.warn(fields, 'disconnected from NATS');
      return;
    case 'reconnect':
      ctx.logger.info(fields, 'reconnected to NATS');
      return;
    case 'error':
      if (s.error instanceof errors.PermissionViolationError) {
        // The server refused this identity something its permissions do not allow: a bug or an
        // attempt, either way worth an error and a count.
        ctx.metrics.permissionViolations.inc({ operation: s.error.operation });
        ctx.logger.error(
          { operation: s.error.operation, subject: s.error.subject },
          'NATS refused: permission violation',
        );
        return;
      }
      ctx.logger.warn(fields, `NATS status: ${s.type}`);
      return;
    case 'ldm':
    case 'slowConsumer':
    case 'staleConnection':
      ctx.logger.warn(fields, `NATS status: ${s.type}`);
      return;
    default:
      ctx.logger.debug(fields, `NATS status: ${s.type}`);
  }
}
