import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coalesceWrites } from '../src/index.ts';
import { Note, Teardown, rawConnection, testBus } from './helpers.ts';

describe('coalesceWrites', () => {
  let nats: NatsServer;
  let pub: NatsConnection;
  let sub: NatsConnection;

  const teardown = new Teardown();
  beforeAll(async () => {
    nats = await teardown.add(startNats(), (s) => s.stop());
    pub = await teardown.add(rawConnection(nats.url), (c) => c.close());
    sub = await teardown.add(rawConnection(nats.url), (c) => c.close());
  });
  afterAll(() => teardown.run());

  it('changes nothing on an object that is not a nats.js connection', () => {
    expect(coalesceWrites({} as NatsConnection)).toBeUndefined();
  });

  it('delivers everything, in order, whether sent in one turn or from awaited continuations', async () => {
    expect(coalesceWrites(pub)).toBeDefined();
    const got: number[] = [];
    const s = sub.subscribe('coalesce.test', { max: 3000 });
    const done = (async () => {
      for await (const m of s) got.push(Number(new TextDecoder().decode(m.data)));
    })();
    await sub.flush();
    const enc = (n: number): Uint8Array => new TextEncoder().encode(String(n));
    for (let i = 0; i < 1000; i++) pub.publish('coalesce.test', enc(i));
    for (let i = 1000; i < 2000; i++) {
      await Promise.resolve();
      pub.publish('coalesce.test', enc(i));
    }
    // Requests still complete: their writes leave at the end of the turn.
    const echo = sub.subscribe('coalesce.echo', {
      callback: (_e, m) => {
        m.respond(m.data);
      },
    });
    const replies = await Promise.all(
      Array.from({ length: 1000 }, (_, i) =>
        pub.request('coalesce.echo', enc(i), { timeout: 5000 }),
      ),
    );
    expect(replies.map((m) => Number(new TextDecoder().decode(m.data)))).toEqual(
      Array.from({ length: 1000 }, (_, i) => i),
    );
    echo.unsubscribe();
    for (let i = 2000; i < 3000; i++) pub.publish('coalesce.test', enc(i));
    await pub.flush();
    await done;
    expect(got).toEqual(Array.from({ length: 3000 }, (_, i) => i));
  });

  it('a message published right before close() still leaves', async () => {
    const t = await testBus(nats.url, 'coalesce-close');
    // A timeout, so a lost message fails the test instead of hanging it.
    const s = sub.subscribe('dyad.test.v1.note.*', { max: 1, timeout: 5000 });
    await sub.flush();
    t.bus.publish(Note, 'dyad.test.v1.note.7', { n: 7 });
    await t.bus.close();
    const got: string[] = [];
    for await (const m of s) got.push(m.subject);
    expect(got).toEqual(['dyad.test.v1.note.7']);
  });
});
