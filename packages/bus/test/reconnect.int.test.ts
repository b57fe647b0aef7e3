import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Note, Teardown, counterValue, eventually, testBus } from './helpers.ts';
import type { TestBus } from './helpers.ts';

describe('reconnect', () => {
  let nats: NatsServer;
  let pub: TestBus;
  let sub: TestBus;

  const teardown = new Teardown();
  beforeAll(async () => {
    nats = await teardown.add(startNats(), (s) => s.stop());
    pub = await teardown.add(testBus(nats.url, 'rc-pub'), (t) => t.bus.close());
    sub = await teardown.add(testBus(nats.url, 'rc-sub'), (t) => t.bus.close());
  });
  afterAll(() => teardown.run());

  it('a subscription receives messages published after the server restarts on the same port', async () => {
    const got: number[] = [];
    sub.bus.subscribe([Note], 'dyad.test.v1.rc', (d) => void got.push(d.value.n));
    await sub.bus.flush();
    pub.bus.publish(Note, 'dyad.test.v1.rc', { n: 1 });
    await eventually(() => got.includes(1));

    await nats.kill();
    await eventually(() => !sub.bus.isConnected() && !pub.bus.isConnected());
    await nats.restart();
    await eventually(() => sub.bus.isConnected() && pub.bus.isConnected());
    // The subscription is re-established on reconnect; flush makes sure the server has it.
    await sub.bus.flush();
    pub.bus.publish(Note, 'dyad.test.v1.rc', { n: 2 });
    await eventually(() => got.includes(2));
    expect(got).toEqual([1, 2]);

    expect(
      sub.logger.lines.some((l) => l.level === 'warn' && l.msg === 'disconnected from NATS'),
    ).toBe(true);
    expect(
      sub.logger.lines.some((l) => l.level === 'info' && l.msg === 'reconnected to NATS'),
    ).toBe(true);
    expect(
      await counterValue(sub.registry, 'dyad_bus_connection_events_total', { type: 'reconnect' }),
    ).toBe(1);
  });

  it('a durable JetStream consumer keeps consuming across a server restart', async () => {
    await pub.bus.ensureStreams([
      {
        name: 'TEST_RC',
        description: 'reconnect',
        subjects: ['dyad.test.v1.rcjs.>'],
        storage: 'file',
      },
    ]);
    const got: number[] = [];
    await sub.bus.consume(
      [Note],
      { stream: 'TEST_RC', durable: 'rc' },
      (d) => void got.push(d.value.n),
    );
    await pub.bus.jsPublish(Note, 'dyad.test.v1.rcjs.1', { n: 1 });
    await eventually(() => got.includes(1));

    await nats.restart();
    await eventually(() => sub.bus.isConnected() && pub.bus.isConnected());
    // JetStream may need a moment after restart to take publishes; retry until it acks.
    await eventually(async () => {
      try {
        await pub.bus.jsPublish(Note, 'dyad.test.v1.rcjs.2', { n: 2 }, { msgId: 'rc-2' });
        return true;
      } catch {
        return false;
      }
    });
    await eventually(() => got.includes(2), 60_000);
    expect(got).toEqual([1, 2]);
  });
});
