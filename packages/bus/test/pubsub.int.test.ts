import { PodEvent, k8sObjectSubject } from '@dyad/contracts';
import type { PayloadOf } from '@dyad/contracts';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ErrorCode,
  NoRespondersError,
  RemoteError,
  ReplyError,
  RequestTimeoutError,
} from '../src/index.ts';
import type { Delivery } from '../src/index.ts';
import {
  Teardown,
  AddReply,
  AddRequest,
  Note,
  collectDeadLetters,
  counterValue,
  eventually,
  pod,
  rawConnection,
  testBus,
} from './helpers.ts';
import type { TestBus } from './helpers.ts';

describe('core publish/subscribe and request/reply', () => {
  let nats: NatsServer;
  let a: TestBus;
  let b: TestBus;

  const teardown = new Teardown();
  beforeAll(async () => {
    nats = await teardown.add(startNats(), (s) => s.stop());
    a = await teardown.add(testBus(nats.url, 'svc-a'), (t) => t.bus.close());
    b = await teardown.add(testBus(nats.url, 'svc-b'), (t) => t.bus.close());
  });
  afterAll(() => teardown.run());

  it('delivers a published event decoded, with CloudEvents meta, to a subscriber', async () => {
    const got: Delivery<PayloadOf<typeof PodEvent>>[] = [];
    const sub = b.bus.subscribe([PodEvent], 'dyad.k8s.v1.pod.>', (d) => {
      got.push(d);
    });
    await b.bus.flush();
    const subject = k8sObjectSubject('Pod', 'default', 'web-0');
    a.bus.publish(PodEvent, subject, pod('web-0'), { ceSubject: 'pod/default/web-0' });
    await eventually(() => got.length === 1);
    const [d] = got;
    expect(d?.subject).toBe(subject);
    expect(d?.value.object.metadata.name).toBe('web-0');
    expect(d?.meta.type).toBe('io.dyad.k8s.pod.v1');
    expect(d?.meta.source).toBe('/dyad/svc-a');
    expect(d?.meta.subject).toBe('pod/default/web-0');
    expect(d?.header('ce-id')).toBe(d?.meta.id);
    expect(
      await counterValue(b.registry, 'dyad_bus_messages_handled_total', {
        op: 'subscribe',
        outcome: 'ok',
      }),
    ).toBe(1);
    await sub.stop();
  });

  it('keeps serving after a handler throws (logged, counted)', async () => {
    const seen: number[] = [];
    const sub = b.bus.subscribe([Note], 'dyad.test.v1.note.*', (d) => {
      seen.push(d.value.n);
      if (d.value.n === 1) throw new Error('boom on 1');
    });
    await b.bus.flush();
    a.bus.publish(Note, 'dyad.test.v1.note.1', { n: 1 });
    a.bus.publish(Note, 'dyad.test.v1.note.2', { n: 2 });
    await eventually(() => seen.length === 2);
    expect(seen).toEqual([1, 2]);
    expect(
      await counterValue(b.registry, 'dyad_bus_messages_handled_total', {
        op: 'subscribe',
        outcome: 'handler-error',
      }),
    ).toBe(1);
    expect(b.logger.lines.some((l) => l.level === 'error' && l.msg === 'handler failed')).toBe(
      true,
    );
    await sub.stop();
  });

  it('splits a queue group: each message goes to exactly one member', async () => {
    const c = await testBus(nats.url, 'svc-b');
    const first: number[] = [];
    const second: number[] = [];
    const s1 = b.bus.subscribe([Note], 'dyad.test.v1.q', (d) => void first.push(d.value.n), {
      queue: 'workers',
    });
    const s2 = c.bus.subscribe([Note], 'dyad.test.v1.q', (d) => void second.push(d.value.n), {
      queue: 'workers',
    });
    await b.bus.flush();
    await c.bus.flush();
    for (let n = 0; n < 20; n++) a.bus.publish(Note, 'dyad.test.v1.q', { n });
    await eventually(() => first.length + second.length === 20);
    expect([...first, ...second].sort((x, y) => x - y)).toEqual([...Array(20).keys()]);
    await s1.stop();
    await s2.stop();
    await c.bus.close();
  });

  it('refuses to publish a payload that breaks its contract', () => {
    expect(() =>
      a.bus.publish(Note, 'dyad.test.v1.note.x', { n: 'one' } as unknown as { n: number }),
    ).toThrow(/refusing to publish io\.dyad\.test\.note\.v1/);
  });

  it('answers a request with the typed reply', async () => {
    const srv = b.bus.serve(
      AddRequest,
      'dyad.test.v1.add',
      (req) => ({ sum: req.value.a + req.value.b }),
      AddReply,
    );
    await b.bus.flush();
    await expect(
      a.bus.request(AddRequest, 'dyad.test.v1.add', { a: 2, b: 40 }, AddReply),
    ).resolves.toEqual({
      sum: 42,
    });
    await srv.stop();
  });

  it('turns handler errors into typed error replies: ReplyError keeps its code, others are internal', async () => {
    const srv = b.bus.serve(
      AddRequest,
      'dyad.test.v1.add2',
      (req) => {
        if (req.value.a < 0) throw new ReplyError('negative', 'a must not be negative');
        if (req.value.a === 13) throw new Error('unlucky');
        return { sum: req.value.a + req.value.b };
      },
      AddReply,
    );
    await b.bus.flush();
    const negative = await a.bus
      .request(AddRequest, 'dyad.test.v1.add2', { a: -1, b: 0 }, AddReply)
      .catch((e: unknown) => e);
    expect(negative).toBeInstanceOf(RemoteError);
    expect((negative as RemoteError).code).toBe('negative');
    expect((negative as RemoteError).message).toContain('a must not be negative');
    const internal = await a.bus
      .request(AddRequest, 'dyad.test.v1.add2', { a: 13, b: 0 }, AddReply)
      .catch((e: unknown) => e);
    expect(internal).toBeInstanceOf(RemoteError);
    expect((internal as RemoteError).code).toBe(ErrorCode.internal);
    // still serving
    await expect(
      a.bus.request(AddRequest, 'dyad.test.v1.add2', { a: 1, b: 1 }, AddReply),
    ).resolves.toEqual({ sum: 2 });
    await srv.stop();
  });

  it('answers a malformed request with bad-request (not a timeout) and dead-letters it', async () => {
    const srv = b.bus.serve(
      AddRequest,
      'dyad.test.v1.add3',
      (req) => ({ sum: req.value.a + req.value.b }),
      AddReply,
    );
    await b.bus.flush();
    // A well-formed CloudEvent whose body breaks the schema, sent with the raw client.
    const raw = await rawConnection(nats.url);
    const { headers } = await import('@nats-io/transport-node');
    const h = headers();
    h.set('ce-specversion', '1.0');
    h.set('ce-id', 'bad-1');
    h.set('ce-source', '/test');
    h.set('ce-type', AddRequest.type);
    const reply = await raw.request(
      'dyad.test.v1.add3',
      new TextEncoder().encode('{"a":"x","b":1}'),
      {
        timeout: 5000,
        headers: h,
      },
    );
    expect(reply.headers?.get('ce-type')).toBe('io.dyad.bus.error.v1');
    const body = JSON.parse(new TextDecoder().decode(reply.data)) as {
      error: { code: string; message: string };
    };
    expect(body.error.code).toBe(ErrorCode.badRequest);
    expect(body.error.message).toMatch(/^schema: /);
    expect(
      await counterValue(b.registry, 'dyad_bus_dead_letters_total', { reason: 'schema' }),
    ).toBeGreaterThanOrEqual(1);
    await raw.close();
    await srv.stop();
  });

  it('refuses a request whose payload disagrees with its subject: bad-request, dead-lettered, handler not run', async () => {
    let handled = 0;
    // The subject's last token repeats the payload's `a`, as a node name would.
    const srv = b.bus.serve(
      AddRequest,
      'dyad.test.v1.addto.*',
      (req) => {
        handled++;
        return { sum: req.value.a + req.value.b };
      },
      AddReply,
      {
        subjectCheck: (req, subject) =>
          subject.endsWith(`.${req.a}`) ? undefined : `a is ${req.a}, the subject says otherwise`,
      },
    );
    await b.bus.flush();
    const raw = await rawConnection(nats.url);
    const dead = collectDeadLetters(raw, 'svc-b');
    await raw.flush();
    await expect(
      a.bus.request(AddRequest, 'dyad.test.v1.addto.2', { a: 2, b: 3 }, AddReply),
    ).resolves.toEqual({ sum: 5 });
    const err = await a.bus
      .request(AddRequest, 'dyad.test.v1.addto.7', { a: 2, b: 3 }, AddReply)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).code).toBe(ErrorCode.badRequest);
    expect((err as RemoteError).message).toContain('subject-mismatch: a is 2');
    await eventually(() => dead.length === 1);
    expect(dead[0]?.headers?.get('dyad-dlq-reason')).toBe('subject-mismatch');
    expect(dead[0]?.headers?.get('dyad-dlq-subject')).toBe('dyad.test.v1.addto.7');
    expect(handled).toBe(1);
    await raw.close();
    await srv.stop();
  });

  it('rejects with NoRespondersError when nobody serves, and RequestTimeoutError when the server is slow', async () => {
    await expect(
      a.bus.request(AddRequest, 'dyad.test.v1.nobody', { a: 1, b: 1 }, AddReply),
    ).rejects.toBeInstanceOf(NoRespondersError);
    // the server answers only after the requester has given up
    let answer!: () => void;
    const gate = new Promise<void>((r) => (answer = r));
    const srv = b.bus.serve(
      AddRequest,
      'dyad.test.v1.slow',
      async () => {
        await gate;
        return { sum: 0 };
      },
      AddReply,
    );
    await b.bus.flush();
    await expect(
      a.bus.request(AddRequest, 'dyad.test.v1.slow', { a: 1, b: 1 }, AddReply, { timeoutMs: 200 }),
    ).rejects.toBeInstanceOf(RequestTimeoutError);
    answer();
    await srv.stop();
  });
});
