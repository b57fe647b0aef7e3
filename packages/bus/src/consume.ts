import { subjectRoot } from './metrics.ts';
import type { MessageContract, PayloadOf } from '@dyad/contracts';
import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import type {
  ConsumerConfig,
  ConsumerInfo,
  JetStreamClient,
  JetStreamManager,
  JsMsg,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import type { BusContext, BusWorker } from './context.ts';
import { track } from './context.ts';
import { DeadLetterReason, deadLetter } from './deadletter.ts';
import { ConfigConflictError, Refusal } from './errors.ts';
import type { Handler, JsDelivery } from './inbound.ts';
import { decodeRaw, delivery, limiter } from './inbound.ts';
import { Kind, extractTrace, failSpan, inSpan, messagingAttributes } from './tracing.ts';

export type StartPolicy = 'all' | 'last' | 'new' | 'last_per_subject';

export interface ConsumeOptions {
  readonly stream: string;
  /**
   * Durable pull consumer name: created or updated, survives restarts, acks each message after
   * the handler resolves. Without it an ordered (ephemeral, unacknowledged) consumer is used,
   * which suits a replay of current state into memory.
   */
  readonly durable?: string;
  readonly filterSubjects?: readonly string[];
  /** Where a new consumer starts. Defaults to `all`. */
  readonly deliverPolicy?: StartPolicy;
  /** Starts at this stream sequence instead (overrides deliverPolicy). */
  readonly startSeq?: number;
  /** Durable only: how long the server waits for an ack before redelivering. Default 30 s. */
  readonly ackWaitMs?: number;
  /**
   * Durable only: deliveries of a failing message before it is dead-lettered with
   * `handler-failed`. Default 5. A message delivered more often without any ack or nak (the
   * consumer died holding it) is dead-lettered on arrival without running the handler.
   */
  readonly maxDeliver?: number;
  /** Durable only: delay before a nak'd message comes back, by delivery count. Default 1 s doubling, 30 s cap. */
  readonly nakDelayMs?: (deliveryCount: number) => number;
  readonly maxAckPending?: number;
  /** Messages pulled ahead of the handler. Default 32; keep handler time × this under ackWait. */
  readonly maxMessages?: number;
  /** Handlers running at once; 1 (the default) keeps stream order. */
  readonly concurrency?: number;
}

export interface BusConsumer extends BusWorker {
  /** The consumer's name on the server (the durable name, or the ordered consumer's generated one). */
  readonly name: string;
  /** Messages the consumer had to deliver when it was made: 0 means nothing to catch up on. */
  readonly pendingAtStart: number;
}

export const DEFAULT_MAX_DELIVER = 5;
const PULL_EXPIRES_MS = 10_000;
const DEFAULT_ACK_WAIT_MS = 30_000;

export function defaultNakDelayMs(deliveryCount: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, deliveryCount - 1));
}

export async function consume<C extends MessageContract>(
  ctx: BusContext,
  js: JetStreamClient,
  jsm: () => Promise<JetStreamManager>,
  accepted: readonly C[],
  opts: ConsumeOptions,
  handler: Handler<PayloadOf<C>, JsDelivery<PayloadOf<C>>>,
): Promise<BusConsumer> {
  const durable = opts.durable;
  const consumer =
    durable === undefined
      ? await js.consumers.get(opts.stream, {
          // One filter as a string: nats.js then sends it as `filter_subject`, in the create
          // request's subject, where a server permission can confine it (contracts' identities).
          ...(opts.filterSubjects === undefined
            ? {}
            : {
                filter_subjects:
                  opts.filterSubjects.length === 1
                    ? opts.filterSubjects[0]
                    : [...opts.filterSubjects],
              }),
          ...startPosition(opts),
        })
      : (await ensureDurable(await jsm(), opts, durable),
        await js.consumers.get(opts.stream, durable));
  // Pulls expire every 10 s (nats.js: 30), so the server's idle heartbeat comes every 5 s and a
  // consumer that died with a stream leader (seen in the chaos suite: an ordered consumer recreated
  // on a leader that then went away delivered nothing for 45 s) is noticed and recreated in ~10 s.
  const messages = await consumer.consume({
    max_messages: opts.maxMessages ?? 32,
    expires: PULL_EXPIRES_MS,
  });
  const created = await consumer.info(true);
  const name = durable ?? created.name;
  void watchStatus(ctx, messages.status(), opts.stream, name);

  const limit = limiter(durable === undefined ? 1 : (opts.concurrency ?? 1), (err) =>
    ctx.logger.error({ err }, 'message handling failed'),
  );
  const loop = (async () => {
    for await (const m of messages) {
      await limit.run(() =>
        handleOne(ctx, accepted, opts, name, durable !== undefined, m, handler),
      );
    }
    await limit.idle();
  })();
  const stop = async (): Promise<void> => {
    await messages.close();
  };
  const worker = track(ctx, stop, loop, `${opts.stream}/${name}`);
  return { ...worker, name, pendingAtStart: created.num_pending };
}

function startPosition(
  opts: ConsumeOptions,
): Partial<Pick<ConsumerConfig, 'deliver_policy' | 'opt_start_seq'>> {
  if (opts.startSeq !== undefined)
    return { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: opts.startSeq };
  return { deliver_policy: opts.deliverPolicy ?? DeliverPolicy.All };
}

/** The durable's desired config; the server's max_deliver is one above ours, see maxDeliver. */
export function durableConfig(opts: ConsumeOptions, durable: string): Partial<ConsumerConfig> {
  const filters = opts.filterSubjects ?? [];
  return {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    ...startPosition(opts),
    ack_wait: nanos(opts.ackWaitMs ?? DEFAULT_ACK_WAIT_MS),
    max_deliver: (opts.maxDeliver ?? DEFAULT_MAX_DELIVER) + 1,
    ...(opts.maxAckPending === undefined ? {} : { max_ack_pending: opts.maxAckPending }),
    ...(filters.length === 1 ? { filter_subject: filters[0] } : {}),
    ...(filters.length > 1 ? { filter_subjects: [...filters] } : {}),
  };
}

/** Creates the durable, or updates what the server lets change; a different start position is a conflict. */
export async function ensureDurable(
  jsm: JetStreamManager,
  opts: ConsumeOptions,
  durable: string,
): Promise<ConsumerInfo> {
  const want = durableConfig(opts, durable);
  let have: ConsumerInfo;
  try {
    have = await jsm.consumers.info(opts.stream, durable);
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.ConsumerNotFound) {
      return jsm.consumers.add(opts.stream, want);
    }
    throw err;
  }
  const cfg = have.config;
  if (
    cfg.deliver_policy !== want.deliver_policy ||
    (cfg.opt_start_seq ?? 0) !== (want.opt_start_seq ?? 0)
  ) {
    throw new ConfigConflictError(
      `consumer ${opts.stream}/${durable} exists with deliver_policy ${cfg.deliver_policy}, wanted ${want.deliver_policy}; ` +
        'the start position of a durable cannot change: delete the consumer or use a new name',
    );
  }
  const haveFilters = [
    ...(cfg.filter_subjects ?? (cfg.filter_subject ? [cfg.filter_subject] : [])),
  ].sort();
  const wantFilters = [...(opts.filterSubjects ?? [])].sort();
  const changed =
    cfg.ack_wait !== want.ack_wait ||
    cfg.max_deliver !== want.max_deliver ||
    (want.max_ack_pending !== undefined && cfg.max_ack_pending !== want.max_ack_pending) ||
    haveFilters.join('\n') !== wantFilters.join('\n');
  if (!changed) return have;
  try {
    return await jsm.consumers.update(opts.stream, durable, {
      ack_wait: want.ack_wait,
      max_deliver: want.max_deliver,
      ...(want.max_ack_pending === undefined ? {} : { max_ack_pending: want.max_ack_pending }),
      filter_subject: wantFilters.length === 1 ? wantFilters[0] : '',
      filter_subjects: wantFilters.length > 1 ? wantFilters : [],
    });
  } catch (err) {
    throw new ConfigConflictError(
      `consumer ${opts.stream}/${durable} cannot be updated: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
}

async function handleOne<C extends MessageContract>(
  ctx: BusContext,
  accepted: readonly C[],
  opts: ConsumeOptions,
  name: string,
  acked: boolean,
  m: JsMsg,
  handler: Handler<PayloadOf<C>, JsDelivery<PayloadOf<C>>>,
): Promise<void> {
  const maxDeliver = opts.maxDeliver ?? DEFAULT_MAX_DELIVER;
  const info = m.info;
  const where = {
    stream: opts.stream,
    consumer: name,
    seq: info.streamSequence,
    deliveries: info.deliveryCount,
  };
  await inSpan(
    ctx.tracer,
    `process ${opts.stream}/${name}`,
    Kind.consumer,
    messagingAttributes(m.subject, 'process', {
      'messaging.consumer.group.name': name,
      'messaging.nats.stream_sequence': info.streamSequence,
      'messaging.nats.delivery_count': info.deliveryCount,
    }),
    extractTrace(m.headers),
    async (span) => {
      if (acked && info.deliveryCount > maxDeliver) {
        const detail = `delivered ${info.deliveryCount} times without an ack (consumer died or exceeded ack wait)`;
        failSpan(span, new Error(detail));
        ctx.metrics.handled.inc({
          op: 'consume',
          outcome: 'dead-letter',
          subject_root: subjectRoot(m.subject),
        });
        await deadLetter(ctx, m, DeadLetterReason.handlerFailed, detail, where);
        m.term(`dead-lettered: ${DeadLetterReason.handlerFailed}`);
        return;
      }
      const decoded = decodeRaw(accepted, m);
      if (!decoded.ok) {
        failSpan(span, new Error(`${decoded.reason}: ${decoded.detail}`));
        ctx.metrics.handled.inc({
          op: 'consume',
          outcome: 'dead-letter',
          subject_root: subjectRoot(m.subject),
        });
        await deadLetter(ctx, m, decoded.reason, decoded.detail, { ...where, type: decoded.type });
        // Terminated, not nak'd: a message that cannot decode never will.
        if (acked) m.term(`dead-lettered: ${decoded.reason}`);
        return;
      }
      span.setAttribute('messaging.message.id', decoded.meta.id);
      span.setAttribute('cloudevents.event_type', decoded.meta.type);
      const d: JsDelivery<PayloadOf<C>> = {
        ...delivery(m, decoded.value, decoded.meta, decoded.contract),
        stream: opts.stream,
        streamSeq: info.streamSequence,
        deliveryCount: info.deliveryCount,
        redelivered: m.redelivered,
        pending: info.pending,
      };
      try {
        await handler(d);
      } catch (err) {
        failSpan(span, err);
        if (err instanceof Refusal) {
          ctx.metrics.handled.inc({
            op: 'consume',
            outcome: 'dead-letter',
            subject_root: subjectRoot(m.subject),
          });
          await deadLetter(ctx, m, err.reason, err.message, where);
          if (acked) m.term(`dead-lettered: ${err.reason}`);
          return;
        }
        const why = err instanceof Error ? err.message : String(err);
        if (!acked || info.deliveryCount >= maxDeliver) {
          ctx.metrics.handled.inc({
            op: 'consume',
            outcome: 'dead-letter',
            subject_root: subjectRoot(m.subject),
          });
          const detail = acked
            ? `handler failed ${info.deliveryCount} times, last: ${why}`
            : `handler failed: ${why}`;
          await deadLetter(ctx, m, DeadLetterReason.handlerFailed, detail, { ...where, err });
          if (acked) m.term(`dead-lettered: ${DeadLetterReason.handlerFailed}`);
          return;
        }
        const delay = (opts.nakDelayMs ?? defaultNakDelayMs)(info.deliveryCount);
        ctx.metrics.handled.inc({
          op: 'consume',
          outcome: 'handler-error',
          subject_root: subjectRoot(m.subject),
        });
        ctx.logger.warn(
          { ...where, err, retryInMs: delay },
          'handler failed; message will be redelivered',
        );
        m.nak(delay);
        return;
      }
      if (acked) m.ack();
      ctx.metrics.handled.inc({
        op: 'consume',
        outcome: 'ok',
        subject_root: subjectRoot(m.subject),
      });
    },
  );
}

const WORTH_A_WARNING = new Set([
  'heartbeats_missed',
  'consumer_not_found',
  'stream_not_found',
  'consumer_deleted',
  'ordered_consumer_recreated',
  'exceeded_limits',
  'no_responders',
]);

async function watchStatus(
  ctx: BusContext,
  statuses: AsyncIterable<{ type: string }>,
  stream: string,
  consumer: string,
): Promise<void> {
  try {
    for await (const s of statuses) {
      if (WORTH_A_WARNING.has(s.type))
        ctx.logger.warn({ stream, consumer, status: s }, 'consumer status');
      else ctx.logger.debug({ stream, consumer, status: s }, 'consumer status');
    }
  } catch (err) {
    ctx.logger.debug({ err, stream, consumer }, 'consumer status stream ended');
  }
}
