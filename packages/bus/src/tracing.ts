import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context } from '@opentelemetry/api';
import type {
  Attributes,
  Context,
  Span,
  TextMapGetter,
  TextMapSetter,
  Tracer,
} from '@opentelemetry/api';
import { Match } from '@nats-io/transport-node';
import type { MsgHdrs } from '@nats-io/transport-node';
import { traceContextPropagator } from '@dyad/telemetry';

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

/** Runs fn inside a span, records a throw on it, and always ends it. */
export async function inSpan<T>(
  tracer: Tracer,
  name: string,
  kind: SpanKind,
  attributes: Attributes,
  parent: Context,
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  return tracer.startActiveSpan(name, { kind, attributes }, parent, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      failSpan(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

export function failSpan(span: Span, err: unknown): void {
  if (err instanceof Error) span.recordException(err);
  span.setStatus({
    code: SpanStatusCode.ERROR,
    message: err instanceof Error ? err.message : String(err),
  });
}
