import { subjectRoot } from './metrics.ts';
import type { MessageContract, PayloadOf } from '@dyad/contracts';
import type { Msg } from '@nats-io/transport-node';
import type { BusContext, BusWorker } from './context.ts';
import { track } from './context.ts';
import { deadLetter } from './deadletter.ts';
import { Refusal } from './errors.ts';
import type { Delivery, Handler } from './inbound.ts';
import { decodeRaw, delivery, limiter } from './inbound.ts';
import { Kind, extractTrace, failSpan, inSpan, messagingAttributes } from './tracing.ts';

export interface SubscribeOptions {
  /** Queue group: each message goes to one member of the group. */
  readonly queue?: string;
  /** Handlers running at once; 1 (the default) keeps arrival order. */
  readonly concurrency?: number;
}

export type BusSubscription = BusWorker;

/**
 * Core (at-most-once) subscription. Every message is decoded against `accepted`; refusals are
 * dead-lettered. A throwing handler is logged and counted; there is no redelivery on core NATS.
 */
export function subscribe<C extends MessageContract>(
  ctx: BusContext,
  accepted: readonly C[],
  subject: string,
  handler: Handler<PayloadOf<C>, Delivery<PayloadOf<C>>>,
  opts: SubscribeOptions = {},
): BusSubscription {
  const sub = ctx.nc.subscribe(subject, opts.queue === undefined ? {} : { queue: opts.queue });
  const limit = limiter(opts.concurrency ?? 1, (err) =>
    ctx.logger.error({ err }, 'message handling failed'),
  );
  const done = (async () => {
    for await (const msg of sub) {
      await limit.run(() => handleOne(ctx, accepted, subject, msg, handler));
    }
    await limit.idle();
  })();
  const stop = async (): Promise<void> => {
    if (!sub.isClosed()) await sub.drain().catch(() => sub.unsubscribe());
  };
  return track(ctx, stop, done, subject);
}

async function handleOne<C extends MessageContract>(
  ctx: BusContext,
  accepted: readonly C[],
  filter: string,
  msg: Msg,
  handler: Handler<PayloadOf<C>, Delivery<PayloadOf<C>>>,
): Promise<void> {
  await inSpan(
    ctx.tracer,
    `process ${filter}`,
    Kind.consumer,
    messagingAttributes(msg.subject, 'process'),
    extractTrace(msg.headers),
    async (span) => {
      const decoded = decodeRaw(accepted, msg);
      if (!decoded.ok) {
        failSpan(span, new Error(`${decoded.reason}: ${decoded.detail}`));
        ctx.metrics.handled.inc({
          op: 'subscribe',
          outcome: 'dead-letter',
          subject_root: subjectRoot(msg.subject),
        });
        await deadLetter(ctx, msg, decoded.reason, decoded.detail, { type: decoded.type });
        return;
      }
      span.setAttribute('messaging.message.id', decoded.meta.id);
      span.setAttribute('cloudevents.event_type', decoded.meta.type);
      try {
        await handler(delivery(msg, decoded.value, decoded.meta, decoded.contract));
        ctx.metrics.handled.inc({
          op: 'subscribe',
          outcome: 'ok',
          subject_root: subjectRoot(msg.subject),
        });
      } catch (err) {
        failSpan(span, err);
        if (err instanceof Refusal) {
          ctx.metrics.handled.inc({
            op: 'subscribe',
            outcome: 'dead-letter',
            subject_root: subjectRoot(msg.subject),
          });
          await deadLetter(ctx, msg, err.reason, err.message, {
            type: decoded.meta.type,
          });
          return;
        }
        ctx.metrics.handled.inc({
          op: 'subscribe',
          outcome: 'handler-error',
          subject_root: subjectRoot(msg.subject),
        });
        ctx.logger.error(
          { err, subject: msg.subject, type: decoded.meta.type, id: decoded.meta.id },
          'handler failed',
        );
      }
    },
  );
}
