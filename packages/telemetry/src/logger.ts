import { trace } from '@opentelemetry/api';
import { pino } from 'pino';
import type { DestinationStream, Level, Logger } from 'pino';

export interface LoggerOptions {
  readonly service: string;
  /** pino level name; `silent` turns logging off. Defaults to `info`. */
  readonly level?: Level | 'silent';
  /** Where lines go. Defaults to stdout; tests pass a stream to read the lines back. */
  readonly destination?: DestinationStream;
}

/**
 * JSON lines on stdout. Every line carries the service and, inside an active span, its trace and
 * span id, so a log line can be joined to its trace without the caller passing ids around.
 */
export function createLogger(opts: LoggerOptions): Logger {
  const options = {
    level: opts.level ?? 'info',
    base: { service: opts.service },
    timestamp: pino.stdTimeFunctions.isoTime,
    mixin: traceFields,
  };
  return opts.destination === undefined ? pino(options) : pino(options, opts.destination);
}

function traceFields(): Record<string, string> {
  const span = trace.getActiveSpan();
  if (span === undefined) return {};
  const ctx = span.spanContext();
  if (!trace.isSpanContextValid(ctx)) return {};
  return { trace_id: ctx.traceId, span_id: ctx.spanId };
}
