import { ROOT_CONTEXT, context, propagation, trace } from '@opentelemetry/api';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { exportPlan, startTracing } from '../src/index.ts';

function resetGlobals(): void {
  trace.disable();
  context.disable();
  propagation.disable();
}

interface Post {
  url: string;
  type: string;
  body: Buffer;
}

async function collector(): Promise<{ url: string; posts: Post[]; close(): Promise<void> }> {
  const posts: Post[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      posts.push({
        url: req.url ?? '',
        type: req.headers['content-type'] ?? '',
        body: Buffer.concat(chunks),
      });
      res.writeHead(200, { 'content-type': req.headers['content-type'] ?? 'text/plain' }).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    posts,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

afterEach(() => {
  vi.unstubAllEnvs();
  resetGlobals();
});

describe('exportPlan', () => {
  it('exports nothing without an endpoint, when disabled, or when the exporter is none', () => {
    expect(exportPlan({})).toBeUndefined();
    expect(exportPlan({ OTEL_EXPORTER_OTLP_ENDPOINT: '  ' })).toBeUndefined();
    const ep = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' };
    expect(exportPlan({ ...ep, OTEL_SDK_DISABLED: 'TRUE' })).toBeUndefined();
    expect(exportPlan({ ...ep, OTEL_TRACES_EXPORTER: 'none' })).toBeUndefined();
    expect(exportPlan({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://x:1/t' })).toBeDefined();
  });

  it('takes protocol and sampler from the standard variables, signal-specific first', () => {
    const ep = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' };
    expect(exportPlan(ep)).toEqual({
      protocol: 'http/protobuf',
      sampler: { name: 'parentbased_always_on', ratio: 1 },
      batch: {},
    });
    expect(
      exportPlan({
        ...ep,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc',
        OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '0.25',
      }),
    ).toEqual({
      protocol: 'grpc',
      sampler: { name: 'parentbased_traceidratio', ratio: 0.25 },
      batch: {},
    });
    expect(
      exportPlan({ ...ep, OTEL_BSP_SCHEDULE_DELAY: '200', OTEL_BSP_MAX_QUEUE_SIZE: 'lots' })?.batch,
    ).toEqual({ scheduledDelayMillis: 200 });
    expect(exportPlan({ ...ep, OTEL_EXPORTER_OTLP_PROTOCOL: 'carrier-pigeon' })?.protocol).toBe(
      'http/protobuf',
    );
  });
});

describe('startTracing', () => {
  it('propagates an incoming traceparent without exporting', async () => {
    const t = await startTracing({ service: 'svc' });
    expect(t.enabled).toBe(false);
    const incoming = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const parent = propagation.extract(ROOT_CONTEXT, { traceparent: incoming });
    // The bus runs handlers inside context.with; a span started there and its outgoing
    // headers must carry the same trace, which needs the context manager registered here.
    const out: Record<string, string> = {};
    await context.with(parent, async () => {
      await Promise.resolve();
      const span = trace.getTracer('t').startSpan('child');
      await context.with(trace.setSpan(context.active(), span), async () => {
        await Promise.resolve();
        propagation.inject(context.active(), out);
      });
      span.end();
    });
    expect(out['traceparent']?.split('-')[1]).toBe('0af7651916cd43dd8448eb211c80319c');
    await t.shutdown();
  });

  it('exports over the protocol OTEL_EXPORTER_OTLP_PROTOCOL names, to the endpoint the exporter reads', async () => {
    const c = await collector();
    vi.stubEnv('OTEL_EXPORTER_OTLP_ENDPOINT', c.url);
    vi.stubEnv('OTEL_EXPORTER_OTLP_PROTOCOL', 'http/json');
    const t = await startTracing({ service: 'svc-json' });
    try {
      expect(t.enabled).toBe(true);
      trace.getTracer('test').startActiveSpan('exported-span', (span) => span.end());
      await t.shutdown();
      expect(c.posts.length).toBeGreaterThan(0);
      expect(c.posts[0]?.url).toBe('/v1/traces');
      expect(c.posts[0]?.type).toContain('application/json');
      const body = c.posts[0]?.body.toString() ?? '';
      expect(body).toContain('exported-span');
      expect(body).toContain('svc-json');
    } finally {
      await t.shutdown();
      await c.close();
    }
  });

  it('exports http/protobuf by default and honours OTEL_TRACES_SAMPLER', async () => {
    const c = await collector();
    vi.stubEnv('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', `${c.url}/custom`);
    vi.stubEnv('OTEL_TRACES_SAMPLER', 'always_off');
    const off = await startTracing({ service: 'svc-off' });
    trace.getTracer('test').startActiveSpan('dropped', (span) => {
      expect(span.isRecording()).toBe(false);
      span.end();
    });
    await off.shutdown();
    expect(c.posts).toEqual([]);
    resetGlobals();
    vi.stubEnv('OTEL_TRACES_SAMPLER', 'always_on');
    const on = await startTracing({ service: 'svc-proto' });
    try {
      trace.getTracer('test').startActiveSpan('kept', (span) => span.end());
      await on.shutdown();
      expect(c.posts.map((p) => [p.url, p.type])).toEqual([['/custom', 'application/x-protobuf']]);
    } finally {
      await on.shutdown();
      await c.close();
    }
  });
});
