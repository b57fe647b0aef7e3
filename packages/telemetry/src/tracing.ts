import { context, diag, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { Sampler, SpanExporter } from '@opentelemetry/sdk-trace';

export type Env = Readonly<Record<string, string | undefined>>;

export interface TracingOptions {
  readonly service: string;
  /** More resource attributes, e.g. the node of a per-node process (`k8s.node.name`). */
  readonly resource?: Readonly<Record<string, string>>;
  /**
   * The `OTEL_*` variables that decide whether and how to export; defaults to process.env (tests
   * pass their own). The exporter itself reads endpoint and headers from process.env.
   */
  readonly env?: Env;
}

export interface Tracing {
  /** True when spans are exported (an OTLP endpoint is configured and export is not turned off). */
  readonly enabled: boolean;
  /** Flushes pending spans; safe to call more than once. */
  shutdown(): Promise<void>;
}

/**
 * Registers async context and the W3C propagator always, so a `traceparent` that arrives on a
 * message is still the parent of what this process sends on, traced or not. Only when an OTLP
 * endpoint is configured does it load the slim trace SDK and the one exporter the protocol names;
 * the exporter reads endpoint, headers and timeouts from the standard `OTEL_*` variables itself.
 * Call before anything creates spans.
 */
export async function startTracing(opts: TracingOptions): Promise<Tracing> {
  registerPropagation();
  const plan = exportPlan(opts.env ?? process.env);
  if (plan === undefined) return { enabled: false, shutdown: async () => {} };
  const { BatchSpanProcessor, TracerProvider } = await import('@opentelemetry/sdk-trace');
  const { resourceFromAttributes } = await import('@opentelemetry/resources');
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ ...opts.resource, 'service.name': opts.service }),
    sampler: await samplerFrom(plan.sampler),
    spanProcessors: [
      new BatchSpanProcessor({ ...plan.batch, exporter: await exporterFor(plan.protocol) }),
    ],
  });
  trace.setGlobalTracerProvider(provider);
  let done: Promise<void> | undefined;
  return {
    enabled: true,
    shutdown: () => (done ??= provider.shutdown()),
  };
}

function registerPropagation(): void {
  // setGlobal* refuse to replace a registered global; a second start in one process keeps the first.
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
}

export type OtlpProtocol = 'http/protobuf' | 'http/json' | 'grpc';

export interface SamplerSpec {
  readonly name: string;
  readonly ratio: number;
}

/** The batch span processor's settings that OTEL_BSP_* give (the SDK reads none of them). */
export interface BatchSpec {
  readonly scheduledDelayMillis?: number;
  readonly exportTimeoutMillis?: number;
  readonly maxQueueSize?: number;
  readonly maxExportBatchSize?: number;
}

export interface ExportPlan {
  readonly protocol: OtlpProtocol;
  readonly sampler: SamplerSpec;
  readonly batch: BatchSpec;
}

/**
 * What the standard variables ask for, or undefined when nothing is to be exported: no endpoint
 * (so a service without a collector logs no export errors), `OTEL_SDK_DISABLED=true` or
 * `OTEL_TRACES_EXPORTER=none`. Pure, for tests.
 */
export function exportPlan(env: Env): ExportPlan | undefined {
  if (value(env, 'OTEL_SDK_DISABLED')?.toLowerCase() === 'true') return undefined;
  const exporters = (value(env, 'OTEL_TRACES_EXPORTER') ?? 'otlp').split(',').map((s) => s.trim());
  if (!exporters.includes('otlp')) return undefined;
  if (
    value(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') === undefined &&
    value(env, 'OTEL_EXPORTER_OTLP_ENDPOINT') === undefined
  ) {
    return undefined;
  }
  const protocol =
    value(env, 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL') ??
    value(env, 'OTEL_EXPORTER_OTLP_PROTOCOL') ??
    'http/protobuf';
  const known: readonly string[] = ['http/protobuf', 'http/json', 'grpc'];
  if (!known.includes(protocol)) {
    diag.warn(`unsupported OTLP protocol "${protocol}", using http/protobuf`);
  }
  const ratio = Number(value(env, 'OTEL_TRACES_SAMPLER_ARG') ?? '1');
  return {
    protocol: known.includes(protocol) ? (protocol as OtlpProtocol) : 'http/protobuf',
    sampler: {
      name: value(env, 'OTEL_TRACES_SAMPLER') ?? 'parentbased_always_on',
      ratio: Number.isFinite(ratio) && ratio >= 0 && ratio <= 1 ? ratio : 1,
    },
    batch: {
      ...count(env, 'OTEL_BSP_SCHEDULE_DELAY', 'scheduledDelayMillis'),
      ...count(env, 'OTEL_BSP_EXPORT_TIMEOUT', 'exportTimeoutMillis'),
      ...count(env, 'OTEL_BSP_MAX_QUEUE_SIZE', 'maxQueueSize'),
      ...count(env, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 'maxExportBatchSize'),
    },
  };
}

/** `{ [field]: n }` for a non-negative integer variable; nothing when unset or not one. */
function count(env: Env, key: string, field: keyof BatchSpec): Partial<BatchSpec> {
  const v = value(env, key);
  if (v === undefined) return {};
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    diag.warn(`${key}=${v} is not a non-negative integer; ignored`);
    return {};
  }
  return { [field]: n };
}

function value(env: Env, key: string): string | undefined {
  const v = env[key]?.trim();
  return v === undefined || v === '' ? undefined : v;
}

async function exporterFor(protocol: OtlpProtocol): Promise<SpanExporter> {
  // Only the named exporter is imported: grpc-js alone is several MiB a process need not hold.
  switch (protocol) {
    case 'grpc':
      return new (await import('@opentelemetry/exporter-trace-otlp-grpc')).OTLPTraceExporter();
    case 'http/json':
      return new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter();
    case 'http/protobuf':
      return new (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter();
  }
}

/** The sampler names of the OpenTelemetry environment specification. */
async function samplerFrom(spec: SamplerSpec): Promise<Sampler> {
  const { AlwaysOffSampler, AlwaysOnSampler, ParentBasedSampler, TraceIdRatioBasedSampler } =
    await import('@opentelemetry/sdk-trace');
  switch (spec.name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(spec.ratio);
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(spec.ratio) });
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    default:
      diag.warn(`unsupported OTEL_TRACES_SAMPLER "${spec.name}", using parentbased_always_on`);
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

/** The propagator Dyad uses on the wire, for code that injects or extracts without the global one. */
export function traceContextPropagator(): W3CTraceContextPropagator {
  return new W3CTraceContextPropagator();
}
