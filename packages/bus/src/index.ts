export { connectBus } from './connect.ts';
export { coalesceWrites } from './coalesce.ts';
export type { CoalescedWrites } from './coalesce.ts';
export { KeyedPublisher, jsPublishJob } from './keyed-publisher.ts';
export type { PublishJob, PublisherOptions } from './keyed-publisher.ts';
export { backoffDelay, oneAtATime, retryWithBackoff } from './backoff.ts';
export type { BackoffPolicy, RetryOptions } from './backoff.ts';
export type { KvBucket, KvEntry, KvValue, KvWatch, KvWrite } from './kv.ts';
export { NatsEnv, requiresCredentials, natsSettings, readStreamReplicas } from './env.ts';
export { seedFromCreds } from './creds.ts';
export type { NatsSettings } from './env.ts';
export type { Bus, BusOptions, ReconnectOptions } from './connect.ts';
export type { AuthCalloutHandler, AuthCalloutOptions } from './auth-callout.ts';

export type { BusLogger, BusWorker } from './context.ts';
export type { Delivery, Handler, JsDelivery } from './inbound.ts';
export type { HeaderGetter } from './headers.ts';

export type { InputOf, JsPublishOptions, PublishOptions } from './publish.ts';
export type { BusSubscription, SubscribeOptions } from './subscribe.ts';

export { DEFAULT_MAX_DELIVER, defaultNakDelayMs } from './consume.ts';
export type { BusConsumer, ConsumeOptions, StartPolicy } from './consume.ts';

export type { SnapshotEach, SnapshotOptions, SnapshotRead } from './snapshot.ts';
export { jsonText } from './telemetry-publisher.ts';
export type {
  JsonText,
  TelemetryPublisher,
  TelemetryPublisherOptions,
} from './telemetry-publisher.ts';

export type { RequestOptions, ServeHandler, ServeOptions } from './request.ts';
export { ErrorCode, ErrorReply } from './reply.ts';

export { DeadLetterReason, ORIGINAL_NATS_HEADER_PREFIX, deadLetterHeaders } from './deadletter.ts';

export { kvStreamName, streamConfig } from './bootstrap.ts';
export type { EnsureResult } from './bootstrap.ts';

export { installSignalHandlers } from './shutdown.ts';
export type { Drainable, SignalOptions } from './shutdown.ts';

export { busMetrics, subjectRoot } from './metrics.ts';
export type { BusMetrics } from './metrics.ts';

export {
  BusError,
  ConfigConflictError,
  ConfigFileError,
  ConnectError,
  InvalidReplyError,
  NoRespondersError,
  NotConnectedError,
  PublishError,
  Refusal,
  RemoteError,
  ReplyError,
  RequestTimeoutError,
} from './errors.ts';

export type { PubAck } from '@nats-io/jetstream';
