import { ROOT_CONTEXT, SpanKind, context } from '@opentelemetry/api';
import type { Attributes, Context, TextMapGetter, TextMapSetter } from '@opentelemetry/api';
import { Match } from '@nats-io/transport-node';
import type { MsgHdrs } from '@nats-io/transport-node';
import { traceContextPropagator } from '@dyad/telemetry';

export { failSpan, inSpan } from '@dyad/telemetry';

/**
 * W3C trace context is carried on every message even when this service exports no spans, so a
 * trace that enters through a traced service survives a hop through an untraced one.
 */
const propagator = traceContextPropagator();

const setter: TextMapSetter<MsgHdrs> = {
  set: (carrier, key, value) => carrier.set(key, value),
};

const getter: TextMapGetter<MsgHdrs | undefined> = {
  keys: (carrier) => carrier?.keys() ?? [],
  get: (carrier, key) =>
    carrier !== undefined && carrier.has(key, Match.IgnoreCase)
      ? carrier.get(key, Match.IgnoreCase)
      : undefined,
};

export function injectTrace(h: MsgHdrs, ctx: Context = context.active()): void {
  propagator.inject(ctx, h, setter);
}

/** The sender's context, or a fresh root when the message carries none. */
export function extractTrace(h: MsgHdrs | undefined): Context {
  return propagator.extract(ROOT_CONTEXT, h, getter);
}

export const Kind = {
  producer: SpanKind.PRODUCER,
  consumer: SpanKind.CONSUMER,
  client: SpanKind.CLIENT,
  server: SpanKind.SERVER,
} as const;

export function messagingAttributes(
  subject: string,
  operation: string,
  extra: Attributes = {},
): Attributes {
  return {
    'messaging.system': 'nats',
    'messaging.operation.name': operation,
    'messaging.destination.name': subject,
    ...extra,
  };
}
