import { context, trace } from '@opentelemetry/api';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TraceBatch, startInMemoryTracing } from '../src/index.ts';
import type { InMemoryTracing } from '../src/index.ts';

let tracing: InMemoryTracing;
beforeEach(() => {
  tracing = startInMemoryTracing();
});
afterEach(async () => {
  await tracing.shutdown();
});

function input(name: string): ReturnType<typeof trace.setSpan> {
  const span = trace.getTracer('t').startSpan(name);
  span.end();
  return trace.setSpan(context.active(), span);
}

describe('TraceBatch', () => {
  it('makes the batch span a child of the first input and links every other input once', async () => {
    const batch = new TraceBatch();
    const a = input('a');
    const b = input('b');
    batch.add(a);
    batch.add(b);
    batch.add(b); // the same input twice is one link
    batch.add(a); // and the parent is no link
    expect(batch.size).toBe(4);
    await batch.run('flush', { kind: 'test' }, () => 'ok');
    const spans = tracing.spans();
    const [sa, sb, flush] = [
      spans.find((s) => s.name === 'a'),
      spans.find((s) => s.name === 'b'),
      spans.find((s) => s.name === 'flush'),
    ];
    expect(flush?.spanContext().traceId).toBe(sa?.spanContext().traceId);
    expect(flush?.parentSpanContext?.spanId).toBe(sa?.spanContext().spanId);
    expect(flush?.links.map((l) => l.context.spanId)).toEqual([sb?.spanContext().spanId]);
    expect(flush?.attributes['dyad.batch.inputs']).toBe(4);
    expect(batch.size).toBe(0);
  });

  it('a waiting caller is the parent, whichever input came first; the inputs are linked', async () => {
    const batch = new TraceBatch();
    const other = input('other');
    const cni = input('cni');
    batch.add(other);
    batch.add(cni);
    await batch.run('write', {}, () => undefined, cni);
    const spans = tracing.spans();
    const [so, sc, write] = ['other', 'cni', 'write'].map((n) => spans.find((s) => s.name === n));
    expect(write?.parentSpanContext?.spanId).toBe(sc?.spanContext().spanId);
    expect(write?.links.map((l) => l.context.spanId)).toEqual([so?.spanContext().spanId]);
    // a caller without a span changes nothing: the first input stays the parent
    batch.add(other);
    await batch.run('plain', {}, () => undefined, context.active());
    const plain = tracing.spans().find((s) => s.name === 'plain');
    expect(plain?.parentSpanContext?.spanId).toBe(so?.spanContext().spanId);
  });

  it('starts a root without inputs, and inputs added during a run belong to the next batch', async () => {
    const batch = new TraceBatch();
    await batch.run('empty', {}, () => {
      batch.add(input('late'));
    });
    await batch.run('next', {}, () => undefined);
    // a single input is the parent, with nothing left to link
    const spans = tracing.spans();
    const empty = spans.find((s) => s.name === 'empty');
    const next = spans.find((s) => s.name === 'next');
    const late = spans.find((s) => s.name === 'late');
    expect(empty?.parentSpanContext).toBeUndefined();
    expect(empty?.links).toEqual([]);
    expect(next?.parentSpanContext?.spanId).toBe(late?.spanContext().spanId);
    expect(next?.links).toEqual([]);
  });

  it('marks the span failed when the work throws', async () => {
    const batch = new TraceBatch();
    await expect(
      batch.run('boom', {}, () => {
        throw new Error('no');
      }),
    ).rejects.toThrow('no');
    expect(tracing.spans().find((s) => s.name === 'boom')?.status.code).toBe(2);
  });
});
