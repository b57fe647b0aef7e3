import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { existsSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { StartupError, startNats } from '../src/index.ts';
import type { NatsServer } from '../src/index.ts';

function nextReconnect(nc: NatsConnection): Promise<void> {
  return (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'reconnect') return;
    }
    throw new Error('connection closed without reconnecting');
  })();
}

describe('startNats', () => {
  let nats: NatsServer;
  let nc: NatsConnection | undefined;

  beforeAll(async () => {
    nats = await startNats();
    return async () => {
      await nc?.close();
      await nats.stop();
    };
  });

  it('listens on 127.0.0.1 with JetStream storing in its temp dir', async () => {
    expect(nats.url).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    const res = await fetch(`${nats.monitorUrl}/jsz`);
    expect(res.status).toBe(200);
    const jsz: unknown = await res.json();
    expect(jsz).toMatchObject({
      config: { store_dir: expect.stringContaining(nats.storeDir) as unknown },
    });
  });

  it('restart() keeps the URL and the JetStream store, and clients reconnect', async () => {
    const url = nats.url;
    nc = await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'TESTBED', subjects: ['testbed.>'] });
    await jetstream(nc).publish('testbed.one', 'first');

    const reconnected = nextReconnect(nc);
    await nats.restart();
    await reconnected;

    expect(nats.url).toBe(url);
    await jetstream(nc).publish('testbed.two', 'second');
    const info = await (await jetstreamManager(nc)).streams.info('TESTBED');
    expect(info.state.messages).toBe(2);
  });

  it('kill() drops the server hard and restart() brings it back with its data', async () => {
    if (!nc) throw new Error('previous test did not connect');
    const reconnected = nextReconnect(nc);
    await nats.kill();
    await nats.restart();
    await reconnected;
    const info = await (await jetstreamManager(nc)).streams.info('TESTBED');
    expect(info.state.messages).toBe(2);
  });
});

describe('startNats failure', () => {
  it('names nats-server and shows its log when it cannot start, and cleans up', async () => {
    const error = await startNats({ extraArgs: ['--no-such-flag'], keep: false }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StartupError);
    const failure = error as StartupError;
    expect(failure.binary).toBe('nats-server');
    expect(failure.message).toMatch(/^nats-server failed to start: exited/);
    expect(failure.logTail.length).toBeGreaterThan(0);
    expect(existsSync(failure.logPath)).toBe(false);
  });
});
