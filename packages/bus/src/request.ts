import { CONTRACTS_BY_TYPE, encodeEvent } from '@dyad/contracts';
import type { MessageContract, PayloadOf } from '@dyad/contracts';
import { context } from '@opentelemetry/api';
import type { Msg } from '@nats-io/transport-node';
import { TimeoutError, NoRespondersError as NatsNoRespondersError } from '@nats-io/transport-node';
import type { BusContext } from './context.ts';
import { track } from './context.ts';
import { DeadLetterReason, deadLetter } from './deadletter.ts';
import {
  InvalidReplyError,
  NoRespondersError,
  RemoteError,
  ReplyError,
  RequestTimeoutError,
} from './errors.ts';
import { headersFrom } from './headers.ts';
import type { Delivery } from './inbound.ts';
import { decodeRaw, delivery, limiter } from './inbound.ts';
import type { InputOf, PublishOptions } from './publish.ts';
import { encodeOutgoing } from './publish.ts';
import { subjectRoot } from './metrics.ts';
import { ErrorCode, ErrorReply } from './reply.ts';
import type { BusSubscription } from './subscribe.ts';
import {
  Kind,
  extractTrace,
  failSpan,
  inSpan,
  injectTrace,
  messagingAttributes,
} from './tracing.ts';

export interface RequestOptions extends PublishOptions {
  /** Default 5000. */
  readonly timeoutMs?: number;
}

export interface ServeOptions<Req = unknown> {
  /** Queue group, so replicas of a service share the requests. Defaults to the service name. */
  readonly queue?: string;
  /** Requests handled at once. Default 1. */
  readonly concurrency?: number;
  /**
   * For requests on a wildcard subject whose tokens repeat what the payload says (a node name):
   * returns why the decoded request disagrees with the subject it came on, or undefined. A
   * disagreeing request is refused as one that does not decode: answered `bad-request` and
   * dead-lettered (reason `subject-mismatch`), without running the handler.
   */
  readonly subjectCheck?: (request: Req, subject: string) => string | undefined;
}

export type ServeHandler<Req, RepIn> = (request: Delivery<Req>) => RepIn | Promise<RepIn>;

const DEFAULT_TIMEOUT_MS = 5000;

/**
 * Sends a request and decodes the reply against `replyContract`. Rejects with RemoteError (typed
 * error reply), RequestTimeoutError, NoRespondersError or InvalidReplyError (reply dead-lettered).
 */
export async function request<Req extends MessageContract, Rep extends MessageContract>(
  ctx: BusContext,
  reqContract: Req,
  subject: string,
  payload: InputOf<Req>,
  replyContract: Rep,
  opts: RequestOptions = {},
): Promise<PayloadOf<Rep>> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return inSpan(
    ctx.tracer,
    `request ${reqContract.type}`,
    Kind.client,
    messagingAttributes(subject, 'request', { 'cloudevents.event_type': reqContract.type }),
    context.active(),
    async (span) => {
      const out = encodeOutgoing(ctx, reqContract, payload, opts);
      span.setAttribute('messaging.message.id', out.id);
      let reply: Msg;
      try {
        reply = await ctx.nc.request(subject, out.body, {
          timeout: timeoutMs,
          headers: out.headers,
        });
      } catch (err) {
        if (err instanceof TimeoutError)
          throw new RequestTimeoutError(subject, timeoutMs, { cause: err });
        if (
          err instanceof NatsNoRespondersError ||
          (err instanceof Error && err.cause instanceof NatsNoRespondersError)
        ) {
          throw new NoRespondersError(subject, { cause: err });
        }
        throw err;
      }
      ctx.metrics.published.inc({ op: 'request', subject_root: subjectRoot(subject) });
      const decoded = decodeRaw<MessageContract>(
        [replyContract, ErrorReply],
        reply,
        CONTRACTS_BY_TYPE,
      );
      if (!decoded.ok) {
        ctx.metrics.handled.inc({
          op: 'request',
          outcome: 'dead-letter',
          subject_root: subjectRoot(subject),
        });
        await deadLetter(ctx, reply, decoded.reason, decoded.detail, {
          type: decoded.type,
          request: subject,
        });
        throw new InvalidReplyError(subject, decoded.reason, decoded.detail);
      }
      if (decoded.contract === ErrorReply) {
        const { error } = decoded.value as PayloadOf<typeof ErrorReply>;
        ctx.metrics.handled.inc({
          op: 'request',
          outcome: 'error-reply',
          subject_root: subjectRoot(subject),
        });
        throw new RemoteError(subject, error.code, error.message);
      }
      ctx.metrics.handled.inc({ op: 'request', outcome: 'ok', subject_root: subjectRoot(subject) });
      return decoded.value as PayloadOf<Rep>;
    },
  );
}

/**
 * Answers requests on `subject`. The handler's return value is encoded with `replyContract`; a
 * thrown ReplyError becomes an error reply with its code, any other throw `internal`. A request
 * that does not decode is dead-lettered and answered with `bad-request`.
 */
export function serve<Req extends MessageContract, Rep extends MessageContract>(
  ctx: BusContext,
  reqContract: Req,
  subject: string,
  handler: ServeHandler<PayloadOf<Req>, InputOf<Rep>>,
  replyContract: Rep,
  opts: ServeOptions<PayloadOf<Req>> = {},
): BusSubscription {
  const sub = ctx.nc.subscribe(subject, { queue: opts.queue ?? ctx.service });
  const limit = limiter(opts.concurrency ?? 1, (err) =>
    ctx.logger.error({ err }, 'message handling failed'),
  );
  const check = opts.subjectCheck;
  const loop = (async () => {
    for await (const msg of sub) {
      await limit.run(() => answer(ctx, reqContract, subject, msg, handler, replyContract, check));
    }
    await limit.idle();
  })();
  const stop = async (): Promise<void> => {
    if (!sub.isClosed()) await sub.drain().catch(() => sub.unsubscribe());
  };
  return track(ctx, stop, loop, subject);
}

async function answer<Req extends MessageContract, Rep extends MessageContract>(
  ctx: BusContext,
  reqContract: Req,
  filter: string,
  msg: Msg,
  handler: ServeHandler<PayloadOf<Req>, InputOf<Rep>>,
  replyContract: Rep,
  subjectCheck: ((request: PayloadOf<Req>, subject: string) => string | undefined) | undefined,
): Promise<void> {
  await inSpan(
    ctx.tracer,
    `serve ${reqContract.type}`,
    Kind.server,
    messagingAttributes(msg.subject, 'process', { 'messaging.nats.subscription': filter }),
    extractTrace(msg.headers),
    async (span) => {
      const decoded = decodeRaw([reqContract], msg);
      if (!decoded.ok) {
        failSpan(span, new Error(`${decoded.reason}: ${decoded.detail}`));
        ctx.metrics.handled.inc({
          op: 'serve',
          outcome: 'dead-letter',
          subject_root: subjectRoot(msg.subject),
        });
        await deadLetter(ctx, msg, decoded.reason, decoded.detail, { type: decoded.type });
        respondError(ctx, msg, ErrorCode.badRequest, `${decoded.reason}: ${decoded.detail}`);
        return;
      }
      span.setAttribute('messaging.message.id', decoded.meta.id);
      const mismatch = subjectCheck?.(decoded.value, msg.subject);
      if (mismatch !== undefined) {
        failSpan(span, new Error(`${DeadLetterReason.subjectMismatch}: ${mismatch}`));
        ctx.metrics.handled.inc({
          op: 'serve',
          outcome: 'dead-letter',
          subject_root: subjectRoot(msg.subject),
        });
        await deadLetter(ctx, msg, DeadLetterReason.subjectMismatch, mismatch, {
          type: decoded.meta.type,
        });
        respondError(
          ctx,
          msg,
          ErrorCode.badRequest,
          `${DeadLetterReason.subjectMismatch}: ${mismatch}`,
        );
        return;
      }
      let body: Uint8Array;
      let replyHeaders;
      try {
        const value = await handler(delivery(msg, decoded.value, decoded.meta, decoded.contract));
        const out = encodeOutgoing(ctx, replyContract, value, {});
        body = out.body;
        replyHeaders = out.headers;
      } catch (err) {
        failSpan(span, err);
        ctx.metrics.handled.inc({
          op: 'serve',
          outcome: 'handler-error',
          subject_root: subjectRoot(msg.subject),
        });
        const code = err instanceof ReplyError ? err.code : ErrorCode.internal;
        const message = err instanceof Error ? err.message : String(err);
        if (!(err instanceof ReplyError)) {
          ctx.logger.error(
            { err, subject: msg.subject, id: decoded.meta.id },
            'request handler failed',
          );
        }
        respondError(ctx, msg, code, message);
        return;
      }
      ctx.metrics.handled.inc({
        op: 'serve',
        outcome: 'ok',
        subject_root: subjectRoot(msg.subject),
      });
      if (msg.reply === undefined || msg.reply === '') {
        ctx.logger.warn(
          { subject: msg.subject, id: decoded.meta.id },
          'request without a reply subject',
        );
        return;
      }
      msg.respond(body, { headers: replyHeaders });
    },
  );
}

function respondError(ctx: BusContext, msg: Msg, code: string, message: string): void {
  if (msg.reply === undefined || msg.reply === '') return;
  // A handler's code that is not kebab-case would fail the error contract itself.
  const safe = /^[a-z][a-z0-9-]*$/.test(code) ? code : ErrorCode.internal;
  const ev = encodeEvent(ErrorReply, { error: { code: safe, message } }, { source: ctx.source });
  const h = headersFrom(ev.headers);
  injectTrace(h, context.active());
  msg.respond(ev.body, { headers: h });
}
