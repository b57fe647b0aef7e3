import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { NodeSDK } from '@opentelemetry/sdk-node';

export interface TracingOptions {
  readonly service: string;
  /** Defaults to process.env; tests pass their own. */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

export interface Tracing {
  /** False when no OTLP endpoint is configured or the SDK is disabled. */
  readonly enabled: boolean;
  /** Flushes pending spans; safe to call more than once. */
  shutdown(): Promise<void>;
}

/**
 * Exports spans over OTLP (http/protobuf) when the standard endpoint variables are set, and does
 * nothing otherwise: a service without a collector pays no exporter cost and logs no export errors.
 * Call before anything creates spans. The W3C propagator is set so `traceparent` crosses the bus.
 */
export function startTracing(opts: TracingOptions): Tracing {
  const env = opts.env ?? process.env;
  const url = tracesUrl(env);
  if (url === undefined) return { enabled: false, shutdown: async () => {} };
  const sdk = new NodeSDK({
    serviceName: opts.service,
    traceExporter: new OTLPTraceExporter({ url }),
    textMapPropagator: new W3CTraceContextPropagator(),
    instrumentations: [],
    metricReaders: [],
    logRecordProcessors: [],
  });
  sdk.start();
  let done: Promise<void> | undefined;
  return {
    enabled: true,
    shutdown: () => (done ??= sdk.shutdown()),
  };
}

export function tracingWanted(env: Readonly<Record<string, string | undefined>>): boolean {
  return tracesUrl(env) !== undefined;
}

/**
 * The OTLP traces URL per the spec: the signal-specific variable is used as given, the generic
 * one gets `/v1/traces` appended. Undefined means tracing stays off.
 */
export function tracesUrl(env: Readonly<Record<string, string | undefined>>): string | undefined {
  if (env['OTEL_SDK_DISABLED']?.trim().toLowerCase() === 'true') return undefined;
  const traces = env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']?.trim();
  if (traces !== undefined && traces !== '') return traces;
  const base = env['OTEL_EXPORTER_OTLP_ENDPOINT']?.trim();
  if (base === undefined || base === '') return undefined;
  return `${base.replace(/\/+$/, '')}/v1/traces`;
}

/** The propagator Dyad uses on the wire, for code that injects or extracts without the global one. */
export function traceContextPropagator(): W3CTraceContextPropagator {
  return new W3CTraceContextPropagator();
}
