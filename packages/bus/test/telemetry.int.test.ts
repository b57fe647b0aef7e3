import type { PayloadOf } from '@dyad/contracts';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonText } from '../src/index.ts';
import type { Delivery } from '../src/index.ts';
import { Note, eventually, testBus } from './helpers.ts';
import type { TestBus } from './helpers.ts';

const now = () => new Date().toISOString();

describe('telemetry publisher', () => {
  let nats: NatsServer;
  let a: TestBus;
  let b: TestBus;

  beforeAll(async () => {
    nats = await startNats();
    a = await testBus(nats.url, 'svc-a');
    b = await testBus(nats.url, 'svc-b');
  });
  afterAll(async () => {
    await a.bus.close();
    await b.bus.close();
    await nats.stop();
  });

  it('sends CloudEvents a contract consumer decodes, each with its own id', async () => {
    const got: Delivery<PayloadOf<typeof Note>>[] = [];
    const sub = b.bus.subscribe([Note], 'dyad.test.v1.note.>', (d) => {
      got.push(d);
    });
    await b.bus.flush();
    const p = a.bus.telemetryPublisher(Note, { maxUnconfirmed: 64 });
    const t = '2026-12-06T00:00:00.000Z';
    expect(p.publish('dyad.test.v1.note.1', jsonText({ n: 1, text: 'x' }), 'note/1', t)).toBe(true);
    expect(p.publish('dyad.test.v1.note.2', jsonText({ n: 2, text: 'y' }), undefined, t)).toBe(
      true,
    );
    await eventually(() => got.length === 2);
    expect(got.map((d) => d.value)).toEqual([
      { n: 1, text: 'x' },
      { n: 2, text: 'y' },
    ]);
    expect(got[0]?.meta).toMatchObject({ source: '/dyad/svc-a', subject: 'note/1' });
    expect(got[0]?.meta.time).toBe(t);
    expect(got[0]?.header('ce-datacontenttype')).toBe('application/json');
    expect(got[0]?.meta.id).not.toBe(got[1]?.meta.id);
    expect(got[1]?.header('ce-subject')).toBeUndefined();
    expect(got[1]?.meta).toMatchObject({ type: Note.type, time: t });
    // a value that would break the header block is refused, not sent
    expect(p.publish('dyad.test.v1.note.3', jsonText({ n: 3, text: '' }), 'a\r\nb: c', t)).toBe(
      false,
    );
    await sub.stop();
  });

  it('refuses past maxUnconfirmed until a flush confirms, so its buffer is bounded', async () => {
    const p = a.bus.telemetryPublisher(Note, { maxUnconfirmed: 8, flushEvery: 4 });
    let accepted = 0;
    // one synchronous burst: no flush can complete inside it
    for (let i = 0; i < 100; i++)
      if (p.publish('dyad.test.v1.note.9', jsonText({ n: i, text: '' }), undefined, now()))
        accepted++;
    expect(accepted).toBe(8);
    expect(p.unconfirmed).toBe(8);
    expect(p.accepting).toBe(false);
    await eventually(() => p.unconfirmed === 0);
    expect(p.accepting).toBe(true);
    expect(p.publish('dyad.test.v1.note.9', jsonText({ n: 0, text: '' }), undefined, now())).toBe(
      true,
    );
  });
});
