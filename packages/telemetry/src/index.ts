export { createLogger } from './logger.ts';
export type { LoggerOptions } from './logger.ts';

export { exportPlan, startTracing, traceContextPropagator } from './tracing.ts';
export type {
  BatchSpec,
  Env,
  ExportPlan,
  OtlpProtocol,
  SamplerSpec,
  Tracing,
  TracingOptions,
} from './tracing.ts';

export { TraceBatch } from './batch.ts';
export { failSpan, inSpan, withSpan } from './span.ts';

export { startInMemoryTracing } from './testing.ts';
export type { InMemoryTracing } from './testing.ts';

export { createMetrics } from './metrics.ts';
export type { MetricsOptions } from './metrics.ts';

export { startHealthServer } from './health.ts';
export type { HealthServer, HealthServerOptions, Probe } from './health.ts';

export { HealthServerListenError, TelemetryError } from './errors.ts';

export type { Logger } from 'pino';
export type { Registry } from 'prom-client';
export type { ReadableSpan } from '@opentelemetry/sdk-trace';
