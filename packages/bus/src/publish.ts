import { subjectRoot } from './metrics.ts';
import { encodeEvent } from '@dyad/contracts';
import type { MessageContract } from '@dyad/contracts';
import { context, trace } from '@opentelemetry/api';
import type { JetStreamClient, JetStreamPublishOptions, PubAck } from '@nats-io/jetstream';
import type { MsgHdrs } from '@nats-io/transport-node';
import type { z } from 'zod';
import type { BusContext } from './context.ts';
import { PublishError } from './errors.ts';
import { headersFrom } from './headers.ts';
import { Kind, failSpan, inSpan, injectTrace, messagingAttributes } from './tracing.ts';

/** What a producer passes for a contract: zod input, so defaults may be left out. */
export type InputOf<C extends MessageContract> = z.input<C['schema']>;

export interface PublishOptions {
  /** CloudEvents `subject`: what the event is about, e.g. `pod/default/web-0`. */
  readonly ceSubject?: string;
  /** CloudEvents `id`; a random UUID when omitted. */
  readonly id?: string;
  readonly time?: Date;
  /** Extra headers; CloudEvents and trace headers win on a clash. */
  readonly headers?: Readonly<Record<string, string>>;
}

export interface JsPublishOptions extends PublishOptions {
  /** Sets `Nats-Msg-Id`: a repeat within the stream's duplicate window is dropped. */
  readonly msgId?: string;
  /** Sets `Nats-TTL` (NATS duration, e.g. `30s`, `10m`); the stream must allow message TTLs. */
  readonly ttl?: string;
  /** Optimistic concurrency, e.g. `{ lastSubjectSequence: 42 }`. */
  readonly expect?: JetStreamPublishOptions['expect'];
  readonly timeoutMs?: number;
}

export function encodeOutgoing<C extends MessageContract>(
  ctx: BusContext,
  contract: C,
  payload: InputOf<C>,
  opts: PublishOptions,
): { headers: MsgHdrs; body: Uint8Array; id: string } {
  const ev = encodeEvent(contract, payload, {
    source: ctx.source,
    id: opts.id,
    time: opts.time,
    subject: opts.ceSubject,
  });
  const h = headersFrom({ ...opts.headers, ...ev.headers });
  injectTrace(h, context.active());
  return { headers: h, body: ev.body, id: ev.headers['ce-id'] ?? '' };
}

/** Core publish: fire and forget, no persistence guarantee. Throws if the payload breaks its contract. */
export function publish<C extends MessageContract>(
  ctx: BusContext,
  contract: C,
  subject: string,
  payload: InputOf<C>,
  opts: PublishOptions = {},
): void {
  const span = ctx.tracer.startSpan(`publish ${contract.type}`, {
    kind: Kind.producer,
    attributes: messagingAttributes(subject, 'publish', {
      'cloudevents.event_type': contract.type,
    }),
  });
  try {
    // The traceparent sent is this producer span's, so the consumer's span hangs under it.
    const out = context.with(trace.setSpan(context.active(), span), () =>
      encodeOutgoing(ctx, contract, payload, opts),
    );
    span.setAttribute('messaging.message.id', out.id);
    ctx.nc.publish(subject, out.body, { headers: out.headers });
    ctx.metrics.published.inc({ op: 'publish', subject_root: subjectRoot(subject) });
  } catch (err) {
    failSpan(span, err);
    throw err;
  } finally {
    span.end();
  }
}

/** JetStream publish; resolves with the stream's ack, rejects with PublishError. */
export async function jsPublish<C extends MessageContract>(
  ctx: BusContext,
  js: JetStreamClient,
  contract: C,
  subject: string,
  payload: InputOf<C>,
  opts: JsPublishOptions = {},
): Promise<PubAck> {
  return inSpan(
    ctx.tracer,
    `publish ${contract.type}`,
    Kind.producer,
    messagingAttributes(subject, 'publish', { 'cloudevents.event_type': contract.type }),
    context.active(),
    async (span) => {
      const out = encodeOutgoing(ctx, contract, payload, opts);
      span.setAttribute('messaging.message.id', out.id);
      const jsOpts: Partial<JetStreamPublishOptions> = { headers: out.headers };
      if (opts.msgId !== undefined) jsOpts.msgID = opts.msgId;
      if (opts.ttl !== undefined) jsOpts.ttl = opts.ttl;
      if (opts.expect !== undefined) jsOpts.expect = opts.expect;
      if (opts.timeoutMs !== undefined) jsOpts.timeout = opts.timeoutMs;
      let ack: PubAck;
      try {
        ack = await js.publish(subject, out.body, jsOpts);
      } catch (err) {
        throw new PublishError(subject, err instanceof Error ? err.message : String(err), {
          cause: err,
        });
      }
      ctx.metrics.published.inc({ op: 'jetstream', subject_root: subjectRoot(subject) });
      span.setAttribute('messaging.nats.stream_sequence', ack.seq);
      if (ack.duplicate) span.setAttribute('messaging.nats.duplicate', true);
      return ack;
    },
  );
}
