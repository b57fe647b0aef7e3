import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  InMemorySpanExporter,
  SimpleSpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';

export interface InMemoryTracing {
  readonly provider: TracerProvider;
  /** Spans ended so far, oldest first. */
  spans(): ReadableSpan[];
  reset(): void;
  /** Unregisters the globals so the next test can register its own. */
  shutdown(): Promise<void>;
}

/**
 * Registers a global tracer provider that keeps finished spans in memory, with async context and
 * the W3C propagator, for tests that assert on spans. Not for production use.
 */
export function startInMemoryTracing(): InMemoryTracing {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  const contextManager = new AsyncLocalStorageContextManager().enable();
  // The API refuses to replace registered globals; clear any a previous test left behind.
  trace.disable();
  context.disable();
  propagation.disable();
  trace.setGlobalTracerProvider(provider);
  context.setGlobalContextManager(contextManager);
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  return {
    provider,
    spans: () => exporter.getFinishedSpans().slice(),
    reset: () => exporter.reset(),
    shutdown: async () => {
      await provider.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}
