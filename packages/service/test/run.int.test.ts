import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { startService } from '../src/index.ts';
import type { ServiceConfig, ServiceSpec } from '../src/index.ts';

interface TestConfig extends ServiceConfig {
  readonly greeting: string;
}

describe('startService against a real nats-server', () => {
  let nats: NatsServer;
  beforeAll(async () => {
    nats = await startNats();
  });
  afterAll(async () => {
    await nats.stop();
  });

  const config = (env: NodeJS.ProcessEnv): TestConfig => {
    if (env.GREETING === undefined) throw new Error('GREETING is required');
    return {
      greeting: env.GREETING,
      nats: { servers: [nats.url], coalesceWrites: true, streamReplicas: 1 },
      health: { host: '127.0.0.1', port: 0 },
      logLevel: 'silent',
    };
  };
  const env = { GREETING: 'hello', OTEL_SDK_DISABLED: 'true' };

  it('hands the service its config and a connected bus, serves /readyz from it, and on a signal stops it, drains and exits 0', async () => {
    let ready = false;
    const stop = vi.fn(() => Promise.resolve());
    const exit = vi.fn();
    const spec: ServiceSpec<TestConfig> = {
      name: 'svc-test',
      loadConfig: config,
      start: ({ cfg, bus }) => {
        expect(cfg.greeting).toBe('hello');
        expect(bus.isConnected()).toBe(true);
        return Promise.resolve({ ready: () => ready, stop });
      },
    };
    // Not SIGTERM: the test bed stops its servers on that one, in this process too.
    const s = await startService(spec, { env, exit, signals: ['SIGUSR2'] });
    try {
      const readyz = async () => (await fetch(`${s.health.url}/readyz`)).status;
      expect(await readyz()).toBe(503);
      ready = true;
      expect(await readyz()).toBe(200);
      process.emit('SIGUSR2');
      await vi.waitFor(() => expect(exit).toHaveBeenCalledWith(0));
      expect(stop).toHaveBeenCalledTimes(1);
      expect(s.bus.isConnected()).toBe(false);
      await expect(fetch(`${s.health.url}/readyz`)).rejects.toThrow();
    } finally {
      s.uninstall();
    }
  });

  it('a start that fails closes the bus and rejects; bad configuration starts nothing', async () => {
    let bus: { isConnected(): boolean } | undefined;
    const failing: ServiceSpec<TestConfig> = {
      name: 'svc-fail',
      loadConfig: config,
      start: (ctx) => {
        bus = ctx.bus;
        return Promise.reject(new Error('no luck'));
      },
    };
    await expect(startService(failing, { env })).rejects.toThrow('no luck');
    expect(bus?.isConnected()).toBe(false);

    const start = vi.fn();
    await expect(
      startService({ ...failing, start }, { env: { OTEL_SDK_DISABLED: 'true' } }),
    ).rejects.toThrow('GREETING is required');
    expect(start).not.toHaveBeenCalled();
  });
});
