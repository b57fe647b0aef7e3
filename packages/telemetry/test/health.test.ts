import { Counter } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { createMetrics, startHealthServer } from '../src/index.ts';
import type { HealthServer } from '../src/index.ts';

describe('startHealthServer', () => {
  let server: HealthServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('listens on every address of both families unless told a host, so scrapes from outside loopback reach it', async () => {
    const registry = createMetrics({ processMetrics: false });
    server = await startHealthServer({ port: 0, registry, isReady: () => true });
    expect(['::', '0.0.0.0']).toContain(server.host);
    const ipv4 = await fetch(`http://127.0.0.1:${server.port}/healthz`);
    expect(ipv4.status).toBe(200);
    if (server.host === '::') {
      // bound to a wildcard, not to one loopback: the other family's address answers too
      expect((await fetch(`http://[::1]:${server.port}/healthz`)).status).toBe(200);
    }
    const pinned = await startHealthServer({
      port: 0,
      host: '127.0.0.1',
      registry,
      isReady: () => true,
    });
    try {
      expect(pinned.url).toBe(`http://127.0.0.1:${pinned.port}`);
    } finally {
      await pinned.close();
    }
  });

  it('answers /healthz, flips /readyz with the probe, and serves registered metrics', async () => {
    const registry = createMetrics({ defaultLabels: { service: 'svc-h' } });
    const counter = new Counter({
      name: 'dyad_test_things_total',
      help: 'things',
      registers: [registry],
    });
    counter.inc(3);
    let ready = false;
    server = await startHealthServer({ port: 0, registry, isReady: () => ready });
    expect(server.port).toBeGreaterThan(0);

    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);

    expect((await fetch(`${server.url}/readyz`)).status).toBe(503);
    ready = true;
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);

    const metrics = await fetch(`${server.url}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toContain('text/plain');
    const text = await metrics.text();
    expect(text).toContain('dyad_test_things_total{service="svc-h"} 3');
    // default process metrics are on
    expect(text).toContain('process_cpu_user_seconds_total');

    expect((await fetch(`${server.url}/nope`)).status).toBe(404);
  });

  it('treats an async probe that rejects as not ready, and isHealthy drives /healthz', async () => {
    const registry = createMetrics({ processMetrics: false });
    server = await startHealthServer({
      port: 0,
      registry,
      isReady: () => Promise.reject(new Error('bus down')),
      isHealthy: () => Promise.resolve(false),
    });
    expect((await fetch(`${server.url}/readyz`)).status).toBe(503);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(503);
    const text = await (await fetch(`${server.url}/metrics`)).text();
    expect(text).not.toContain('process_cpu_user_seconds_total');
  });

  it('keeps registries apart: two services in one process do not collide', () => {
    const a = createMetrics({ processMetrics: false });
    const b = createMetrics({ processMetrics: false });
    new Counter({ name: 'dyad_same_name_total', help: 'x', registers: [a] });
    expect(
      () => new Counter({ name: 'dyad_same_name_total', help: 'x', registers: [b] }),
    ).not.toThrow();
  });
});
