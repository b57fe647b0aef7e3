import { trace } from '@opentelemetry/api';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger, startInMemoryTracing } from '../src/index.ts';
import type { InMemoryTracing } from '../src/index.ts';

function capture(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  const lines = (): Record<string, unknown>[] =>
    chunks
      .join('')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { stream, lines };
}

describe('createLogger', () => {
  let tracing: InMemoryTracing;
  beforeEach(() => {
    tracing = startInMemoryTracing();
  });
  afterEach(async () => {
    await tracing.shutdown();
  });

  it('adds the active span trace_id and span_id to each line', () => {
    const out = capture();
    const log = createLogger({ service: 'svc-a', destination: out.stream });
    let traceId = '';
    let spanId = '';
    trace.getTracer('test').startActiveSpan('work', (span) => {
      traceId = span.spanContext().traceId;
      spanId = span.spanContext().spanId;
      log.info({ k: 1 }, 'inside');
      span.end();
    });
    const [line] = out.lines();
    expect(line).toMatchObject({
      service: 'svc-a',
      msg: 'inside',
      k: 1,
      trace_id: traceId,
      span_id: spanId,
    });
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(spanId).toMatch(/^[0-9a-f]{16}$/);
  });

  it('omits trace fields outside a span and honours the level', () => {
    const out = capture();
    const log = createLogger({ service: 'svc-b', level: 'warn', destination: out.stream });
    log.info('dropped');
    log.warn('kept');
    const lines = out.lines();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ service: 'svc-b', msg: 'kept' });
    expect(lines[0]).not.toHaveProperty('trace_id');
    expect(lines[0]).not.toHaveProperty('span_id');
  });
});
