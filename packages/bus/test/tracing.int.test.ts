import { K8sStream, PodEvent, k8sObjectSubject } from '@dyad/contracts';
import { startNats } from '@dyad/testbed';
import { KeyedPublisher, jsPublishJob } from '../src/index.ts';
import type { NatsServer } from '@dyad/testbed';
import { startInMemoryTracing } from '@dyad/telemetry';
import type { InMemoryTracing, ReadableSpan } from '@dyad/telemetry';
import { ROOT_CONTEXT, SpanKind, context, trace } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AddReply, AddRequest, Note, Teardown, eventually, pod, testBus } from './helpers.ts';
import type { TestBus } from './helpers.ts';

describe('trace context across the bus', () => {
  let nats: NatsServer;
  let tracing: InMemoryTracing;
  let a: TestBus;
  let b: TestBus;

  const teardown = new Teardown();
  beforeAll(async () => {
    tracing = await teardown.add(startInMemoryTracing(), (t) => t.shutdown());
    nats = await teardown.add(startNats(), (s) => s.stop());
    a = await teardown.add(testBus(nats.url, 'trace-a'), (t) => t.bus.close());
    b = await teardown.add(testBus(nats.url, 'trace-b'), (t) => t.bus.close());
  });
  afterAll(() => teardown.run());

  const tracer = () => trace.getTracer('test');
  const spanNamed = (name: string): ReadableSpan | undefined =>
    tracing.spans().find((s) => s.name === name);

  /** Runs fn in a fresh root span and returns that span's trace id. */
  async function inRoot(name: string, fn: () => Promise<void> | void): Promise<string> {
    return tracer().startActiveSpan(name, async (span) => {
      try {
        await fn();
        return span.spanContext().traceId;
      } finally {
        span.end();
      }
    });
  }

  it('core publish → subscribe: the handler runs in a CONSUMER span under the producer span', async () => {
    const seen: string[] = [];
    const sub = b.bus.subscribe([Note], 'dyad.test.v1.trace.core', () => {
      seen.push(trace.getActiveSpan()?.spanContext().traceId ?? 'none');
    });
    await b.bus.flush();
    const traceId = await inRoot('origin-core', () =>
      a.bus.publish(Note, 'dyad.test.v1.trace.core', { n: 1 }),
    );
    await eventually(() => seen.length === 1);
    expect(seen[0]).toBe(traceId);
    await eventually(() => spanNamed('process dyad.test.v1.trace.core'));
    const producer = spanNamed(`publish ${Note.type}`);
    const consumer = spanNamed('process dyad.test.v1.trace.core');
    expect(producer?.kind).toBe(SpanKind.PRODUCER);
    expect(consumer?.kind).toBe(SpanKind.CONSUMER);
    expect(consumer?.spanContext().traceId).toBe(traceId);
    expect(consumer?.parentSpanContext?.spanId).toBe(producer?.spanContext().spanId);
    await sub.stop();
  });

  it('request → serve: SERVER span under the CLIENT span, same trace', async () => {
    tracing.reset();
    let handlerTrace = '';
    const srv = b.bus.serve(
      AddRequest,
      'dyad.test.v1.trace.add',
      (req) => {
        handlerTrace = trace.getActiveSpan()?.spanContext().traceId ?? '';
        return { sum: req.value.a + req.value.b };
      },
      AddReply,
    );
    await b.bus.flush();
    const traceId = await inRoot('origin-request', async () => {
      await a.bus.request(AddRequest, 'dyad.test.v1.trace.add', { a: 1, b: 2 }, AddReply);
    });
    expect(handlerTrace).toBe(traceId);
    await eventually(() => spanNamed(`serve ${AddRequest.type}`));
    const client = spanNamed(`request ${AddRequest.type}`);
    const server = spanNamed(`serve ${AddRequest.type}`);
    expect(client?.kind).toBe(SpanKind.CLIENT);
    expect(server?.kind).toBe(SpanKind.SERVER);
    expect(server?.parentSpanContext?.spanId).toBe(client?.spanContext().spanId);
    await srv.stop();
  });

  it('jsPublish → durable consume: the trace survives storage in a stream', async () => {
    tracing.reset();
    await a.bus.ensureStreams([K8sStream]);
    const seen: string[] = [];
    const c = await b.bus.consume([PodEvent], { stream: K8sStream.name, durable: 'tracer' }, () => {
      seen.push(trace.getActiveSpan()?.spanContext().traceId ?? 'none');
    });
    const traceId = await inRoot('origin-js', async () => {
      await a.bus.jsPublish(PodEvent, k8sObjectSubject('Pod', 'default', 'traced'), pod('traced'));
    });
    await eventually(() => seen.length === 1);
    expect(seen[0]).toBe(traceId);
    await c.stop();
  });

  it("a KeyedPublisher job publishes in the context it was made in, not the queue's", async () => {
    await a.bus.ensureStreams([K8sStream]);
    const subject = k8sObjectSubject('Pod', 'default', 'queued');
    const seen: string[] = [];
    const c = await b.bus.consume(
      [PodEvent],
      { stream: K8sStream.name, filterSubjects: [subject], deliverPolicy: 'last_per_subject' },
      () => {
        seen.push(trace.getActiveSpan()?.spanContext().traceId ?? 'none');
      },
    );
    // NATS is "away" when the job is queued; it goes out on a kick made outside any span.
    let connected = false;
    let failures = 0;
    const publisher = new KeyedPublisher({
      concurrency: 1,
      backoff: { initialMs: 60_000, maxMs: 60_000 },
      onError: () => failures++,
    });
    const traceId = await inRoot('origin-queued', () => {
      publisher.enqueue(
        jsPublishJob(() => (connected ? a.bus : undefined), PodEvent, subject, pod('queued')),
      );
    });
    await eventually(() => failures === 1);
    connected = true;
    context.with(ROOT_CONTEXT, () => publisher.kick());
    await publisher.idle();
    await eventually(() => seen.length === 1);
    expect(seen[0]).toBe(traceId);
    publisher.close();
    await c.stop();
  });

  it('starts a new trace when the message carries none', async () => {
    const seen: string[] = [];
    const sub = b.bus.subscribe([Note], 'dyad.test.v1.trace.none', () => {
      seen.push(trace.getActiveSpan()?.spanContext().traceId ?? 'none');
    });
    await b.bus.flush();
    a.bus.publish(Note, 'dyad.test.v1.trace.none', { n: 2 });
    await eventually(() => seen.length === 1);
    expect(seen[0]).toMatch(/^[0-9a-f]{32}$/);
    expect(seen[0]).not.toBe('00000000000000000000000000000000');
    await sub.stop();
  });
});
