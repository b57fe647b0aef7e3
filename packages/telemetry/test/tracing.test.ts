import { context, propagation, trace } from '@opentelemetry/api';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { startTracing, tracesUrl, tracingWanted } from '../src/index.ts';

describe('startTracing', () => {
  it('is off without an OTLP endpoint and when the SDK is disabled', async () => {
    expect(tracingWanted({})).toBe(false);
    expect(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: '  ' })).toBe(false);
    expect(
      tracingWanted({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318',
        OTEL_SDK_DISABLED: 'true',
      }),
    ).toBe(false);
    const t = startTracing({ service: 'svc', env: {} });
    expect(t.enabled).toBe(false);
    await expect(t.shutdown()).resolves.toBeUndefined();
  });

  it('derives the traces URL as the OTLP spec says', () => {
    expect(tracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318/' })).toBe(
      'http://127.0.0.1:4318/v1/traces',
    );
    expect(
      tracesUrl({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:9999/custom',
      }),
    ).toBe('http://127.0.0.1:9999/custom');
  });

  it('exports spans over OTLP http/protobuf to the configured endpoint', async () => {
    const posts: { url: string; type: string; bytes: number }[] = [];
    const collector = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        posts.push({
          url: req.url ?? '',
          type: req.headers['content-type'] ?? '',
          bytes: Buffer.concat(chunks).byteLength,
        });
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      });
    });
    await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
    const port = (collector.address() as AddressInfo).port;
    const t = startTracing({
      service: 'svc-otlp',
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}` },
    });
    try {
      expect(t.enabled).toBe(true);
      trace.getTracer('test').startActiveSpan('exported-span', (span) => span.end());
      await t.shutdown();
      expect(posts.length).toBeGreaterThan(0);
      expect(posts[0]?.url).toBe('/v1/traces');
      expect(posts[0]?.type).toBe('application/x-protobuf');
      expect(posts[0]?.bytes).toBeGreaterThan(0);
    } finally {
      await t.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
      await new Promise<void>((r) => collector.close(() => r()));
    }
  });
});
