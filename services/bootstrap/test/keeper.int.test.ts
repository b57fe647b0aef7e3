// The bootstrap service's keeper against a real nats-server: it creates every stream and bucket,
// creates them again when the server comes back without its store (the reconnect), and finds a
// stream deleted under it (the periodic check).
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ALL_KV_BUCKETS, ALL_STREAMS, ROUTER_STREAM } from '@dyad/contracts';
import { connectBus, kvStreamName } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { createLogger, createMetrics } from '@dyad/telemetry';
import type { Registry } from '@dyad/telemetry';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { StreamKeeper } from '../src/keeper.ts';
import { createBootstrapMetrics } from '../src/metrics.ts';
import type { BootstrapMetrics } from '../src/metrics.ts';

const EVERY = [
  ...ALL_STREAMS.map((s) => s.name),
  ...ALL_KV_BUCKETS.map((b) => kvStreamName(b.bucket)),
];

describe('the stream keeper', () => {
  let nats: NatsServer;
  let bus: Bus;
  let registry: Registry;
  let metrics: BootstrapMetrics;

  beforeAll(async () => {
    nats = await startNats();
    registry = createMetrics();
    metrics = createBootstrapMetrics(registry);
    bus = await connectBus({
      servers: nats.url,
      name: 'bootstrap-test',
      logger: createLogger({ service: 'bootstrap-test', level: 'silent' }),
      registry,
      reconnect: { timeWaitMs: 100, jitterMs: 50 },
    });
  });
  afterAll(async () => {
    await bus.close();
    await nats.stop();
  });

  async function streams(): Promise<string[]> {
    const raw = await connect({ servers: nats.url });
    try {
      const jsm = await jetstreamManager(raw);
      const names: string[] = [];
      for await (const n of jsm.streams.names()) names.push(n);
      return names.sort();
    } finally {
      await raw.close();
    }
  }

  async function created(stream: string): Promise<number> {
    const m = (await registry.getSingleMetric('dyad_bootstrap_created_total')?.get())?.values;
    return m?.find((v) => v.labels['stream'] === stream)?.value ?? 0;
  }

  function keeper(checkIntervalMs: number): StreamKeeper {
    return new StreamKeeper({
      bus,
      streams: ALL_STREAMS,
      buckets: ALL_KV_BUCKETS,
      checkIntervalMs,
      logger: createLogger({ service: 'bootstrap-test', level: 'silent' }),
      metrics,
    });
  }

  it('creates everything, and again after the server restarts without its store', async () => {
    const k = keeper(3_600_000);
    try {
      await k.start();
      expect(k.healthy).toBe(true);
      expect(await streams()).toEqual([...EVERY].sort());

      // the disk is gone: the server comes back empty, the bus reconnects
      await nats.kill();
      rmSync(nats.storeDir, { recursive: true, force: true });
      await nats.restart();
      await vi.waitFor(async () => expect(await streams()).toEqual([...EVERY].sort()), {
        timeout: 20_000,
        interval: 200,
      });
      // created at start, and once more after the loss
      await vi.waitFor(async () => expect(await created(ROUTER_STREAM)).toBe(2));
      await vi.waitFor(() => expect(k.healthy).toBe(true));
    } finally {
      await k.stop();
    }
  });

  it('finds a stream deleted under it with its periodic check', async () => {
    const k = keeper(200);
    try {
      await k.start();
      const before = await created(ROUTER_STREAM);
      const raw = await connect({ servers: nats.url });
      await (await jetstreamManager(raw)).streams.delete(ROUTER_STREAM);
      await raw.close();
      await vi.waitFor(async () => expect(await created(ROUTER_STREAM)).toBe(before + 1), {
        timeout: 10_000,
        interval: 100,
      });
      expect(await streams()).toContain(ROUTER_STREAM);
    } finally {
      await k.stop();
    }
  });
});
