// The example consumer against a real nats-server, fed by the same publisher the agent uses.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { connectBus, jsonText } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import { FlowEvent, flowSubject } from '@dyad/contracts';
import type { FlowEventValue } from '@dyad/contracts';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

const EXAMPLE = join(import.meta.dirname, '..', 'watch-drops.ts');

const drop = FlowEvent.schema.parse({
  time: '2026-12-06T04:40:00.123Z',
  node_name: 'n1',
  verdict: 'DROPPED',
  drop_reason: 10,
  drop_reason_desc: 'POLICY_DENIED',
  policy_verdict: 'DENIED',
  traffic_direction: 'INGRESS',
  IP: { source: '198.18.0.5', destination: '198.18.0.6', ipVersion: 'IPv4' },
  l4: { UDP: { source_port: 40000, destination_port: 9999 } },
  source: { identity: 0x10001, namespace: 'shop', pod_name: 'pa', labels: [] },
  destination: { identity: 0x10002, namespace: 'shop', pod_name: 'pb', labels: [] },
  interface: { index: 7 },
  is_reply: false,
  event_type: { type: 1 },
  Type: 'L3_L4',
});

describe('examples/watch-drops.ts', () => {
  let nats: NatsServer;
  let bus: Bus;
  // What beforeAll started, stopped in reverse even when it stopped half-way.
  const teardown: (() => unknown)[] = [];

  beforeAll(async () => {
    nats = await startNats();
    teardown.push(() => nats.stop());
    bus = await connectBus({
      servers: nats.url,
      name: 'datapath-agent',
      logger: createLogger({ service: 'example-test', level: 'silent' }),
      registry: createMetrics({ processMetrics: false }),
    });
    teardown.push(() => bus.close());
  });
  afterAll(async () => {
    for (const undo of teardown.reverse()) await undo();
  });

  it('prints each dropped flow with both pods, and nothing else', async () => {
    const child = spawn(process.execPath, [EXAMPLE], {
      env: { PATH: process.env['PATH'], NATS_URL: nats.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    try {
      await vi.waitFor(() => expect(out, err).toContain('ready\n'), { timeout: 30_000 });
      const p = bus.telemetryPublisher(FlowEvent, { maxUnconfirmed: 64 });
      const v6: FlowEventValue = {
        ...drop,
        IP: { source: 'fd00:d1ad::5', destination: 'fd00:d1ad::6', ipVersion: 'IPv6' },
        source: { identity: 2, labels: [] },
      };
      const forwarded: FlowEventValue = {
        ...drop,
        verdict: 'FORWARDED',
        time: '2026-12-06T04:41:00.000Z',
      };
      for (const f of [drop, forwarded, v6])
        expect(p.publish(flowSubject(f), jsonText(f), 'pod/shop/pb', f.time)).toBe(true);
      await vi.waitFor(
        () =>
          expect(out.split('\n').slice(1, 3)).toEqual([
            '2026-12-06T04:40:00.123Z n1 IPv4 shop/pa -> shop/pb POLICY_DENIED',
            '2026-12-06T04:40:00.123Z n1 IPv6 fd00:d1ad::5 -> shop/pb POLICY_DENIED',
          ]),
        { timeout: 30_000 },
      );
      expect(out).not.toContain('04:41');
      expect(err).toBe('');
    } finally {
      child.kill();
    }
  });
});
