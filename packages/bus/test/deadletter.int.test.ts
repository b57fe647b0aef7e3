import {
  DeadLetterHeader,
  DeadLetterStream,
  K8sStream,
  MAX_EVENT_BYTES,
  PodEvent,
  deadLetterSubject,
  k8sObjectSubject,
} from '@dyad/contracts';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/transport-node';
import type { Msg, MsgHdrs, NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeadLetterReason, ORIGINAL_NATS_HEADER_PREFIX } from '../src/index.ts';
import {
  Teardown,
  collectDeadLetters,
  counterValue,
  eventually,
  pod,
  rawConnection,
  reasonOf,
  testBus,
  uniq,
} from './helpers.ts';
import type { TestBus } from './helpers.ts';

const enc = new TextEncoder();

function ceHeaders(type: string, extra: Record<string, string> = {}): MsgHdrs {
  const h = natsHeaders();
  h.set('ce-specversion', '1.0');
  h.set('ce-id', uniq('id'));
  h.set('ce-source', '/test/raw');
  h.set('ce-type', type);
  h.set('content-type', 'application/json');
  for (const [k, v] of Object.entries(extra)) h.set(k, v);
  return h;
}

interface BadInput {
  readonly kind: string;
  readonly reason: string;
  readonly headers: () => MsgHdrs | undefined;
  readonly body: Uint8Array;
}

const validPodJson = JSON.stringify(pod('ok'));

/** Every kind of input a consumer must refuse, with the reason code it must be refused with. */
const BAD_INPUTS: readonly BadInput[] = [
  {
    kind: 'schema failure',
    reason: 'schema',
    headers: () => ceHeaders(PodEvent.type),
    body: enc.encode(JSON.stringify({ op: 'upsert', object: { metadata: { name: 'x' } } })),
  },
  {
    kind: 'unknown CloudEvent type',
    reason: 'unknown-type',
    headers: () => ceHeaders('io.dyad.nothing.here.v1'),
    body: enc.encode(validPodJson),
  },
  {
    kind: 'unknown version',
    reason: 'unknown-type',
    headers: () => ceHeaders('io.dyad.k8s.pod.v9'),
    body: enc.encode(validPodJson),
  },
  {
    kind: 'known type not accepted here',
    reason: 'unexpected-type',
    headers: () => ceHeaders('io.dyad.k8s.node.v1'),
    body: enc.encode(validPodJson),
  },
  {
    kind: 'truncated JSON',
    reason: 'invalid-json',
    headers: () => ceHeaders(PodEvent.type),
    body: enc.encode(validPodJson.slice(0, Math.floor(validPodJson.length / 2))),
  },
  {
    kind: 'oversized payload',
    reason: 'oversized',
    headers: () => ceHeaders(PodEvent.type),
    // Over the contract limit, under nats-server's 1 MiB max_payload, so the server carries it.
    body: enc.encode(JSON.stringify({ ...pod('big'), pad: 'x'.repeat(MAX_EVENT_BYTES + 1024) })),
  },
  {
    kind: 'non-CloudEvent message',
    reason: 'not-cloudevent',
    headers: () => undefined,
    body: enc.encode('hello, not an event'),
  },
  {
    kind: 'unsupported specversion',
    reason: 'unsupported-specversion',
    headers: () => ceHeaders(PodEvent.type, { 'ce-specversion': '0.3' }),
    body: enc.encode(validPodJson),
  },
  {
    kind: 'unsupported content type',
    reason: 'unsupported-content-type',
    headers: () => ceHeaders(PodEvent.type, { 'content-type': 'application/cbor' }),
    body: enc.encode(validPodJson),
  },
];

function expectDeadLetter(
  dl: Msg,
  service: string,
  subject: string,
  bad: BadInput,
  sent: MsgHdrs | undefined,
): void {
  expect(dl.subject).toBe(deadLetterSubject(service));
  expect(reasonOf(dl)).toBe(bad.reason);
  expect(dl.headers?.get(DeadLetterHeader.subject)).toBe(subject);
  expect(dl.headers?.get(DeadLetterHeader.service)).toBe(service);
  expect(dl.headers?.get(DeadLetterHeader.detail)).not.toBe('');
  expect(Date.parse(dl.headers?.get(DeadLetterHeader.time) ?? '')).not.toBeNaN();
  // the original bytes, unchanged
  expect(Buffer.from(dl.data).equals(Buffer.from(bad.body))).toBe(true);
  // the original headers, kept beside the reason
  if (sent !== undefined) {
    for (const key of sent.keys()) {
      // JetStream control headers travel renamed, so the DLQ stream does not act on them.
      const kept = key.toLowerCase().startsWith('nats-')
        ? `${ORIGINAL_NATS_HEADER_PREFIX}${key}`
        : key;
      expect(dl.headers?.get(kept)).toBe(sent.get(key));
      if (kept !== key) expect(dl.headers?.has(key)).toBe(false);
    }
  }
}

describe('dead-letter path', () => {
  let nats: NatsServer;
  let raw: NatsConnection;
  let producer: TestBus;

  const teardown = new Teardown();
  beforeAll(async () => {
    nats = await teardown.add(startNats(), (s) => s.stop());
    raw = await teardown.add(rawConnection(nats.url), (c) => c.close());
    producer = await teardown.add(testBus(nats.url, 'dl-producer'), (t) => t.bus.close());
  });
  afterAll(() => teardown.run());

  describe('core subscription', () => {
    const service = 'dl-core';
    let consumer: TestBus;
    let dead: Msg[];
    const handled: string[] = [];

    const consumerTeardown = new Teardown();
    beforeAll(async () => {
      consumer = await consumerTeardown.add(testBus(nats.url, service), (t) => t.bus.close());
      dead = collectDeadLetters(raw, service);
      consumer.bus.subscribe([PodEvent], 'dyad.k8s.v1.pod.>', (d) => {
        handled.push(d.value.object.metadata.name);
      });
      await consumer.bus.flush();
      await raw.flush();
    });
    afterAll(() => consumerTeardown.run());

    it.each(BAD_INPUTS)(
      '$kind → dead-lettered as $reason, and the next valid message is handled',
      async (bad) => {
        const subject = k8sObjectSubject('Pod', 'default', uniq('bad'));
        const before = dead.length;
        const counted = await counterValue(consumer.registry, 'dyad_bus_dead_letters_total', {
          reason: bad.reason,
          subject_root: 'dyad.k8s.v1',
        });
        const h = bad.headers();
        h?.set('x-test-kind', bad.kind);
        raw.publish(subject, bad.body, h === undefined ? {} : { headers: h });
        await eventually(() => dead.length === before + 1);
        const dl = dead[before];
        if (dl === undefined) throw new Error('no dead letter');
        expectDeadLetter(dl, service, subject, bad, h);
        expect(
          await counterValue(consumer.registry, 'dyad_bus_dead_letters_total', {
            reason: bad.reason,
            subject_root: 'dyad.k8s.v1',
          }),
        ).toBe(counted + 1);

        const name = uniq('good');
        producer.bus.publish(PodEvent, k8sObjectSubject('Pod', 'default', name), pod(name));
        await eventually(() => handled.includes(name));
        expect(dead.length).toBe(before + 1);
      },
    );
  });

  describe('JetStream durable consumer', () => {
    const service = 'dl-js';
    let consumer: TestBus;
    let dead: Msg[];
    const handled: string[] = [];
    const failing = new Map<string, number>();

    const consumerTeardown = new Teardown();
    beforeAll(async () => {
      consumer = await consumerTeardown.add(testBus(nats.url, service), (t) => t.bus.close());
      await consumer.bus.ensureStreams([K8sStream, DeadLetterStream]);
      dead = collectDeadLetters(raw, service);
      await raw.flush();
      await consumer.bus.consume(
        [PodEvent],
        {
          stream: K8sStream.name,
          durable: 'dl-js',
          maxDeliver: 2,
          nakDelayMs: () => 50,
          ackWaitMs: 5000,
        },
        (d) => {
          const name = d.value.object.metadata.name;
          if (name.startsWith('fail-')) {
            failing.set(name, d.deliveryCount);
            throw new Error(`cannot handle ${name}`);
          }
          handled.push(name);
        },
      );
    });
    afterAll(() => consumerTeardown.run());

    it.each(BAD_INPUTS)(
      '$kind → dead-lettered as $reason, terminated, and the stream goes on',
      async (bad) => {
        const js = jetstream(raw);
        const subject = k8sObjectSubject('Pod', 'default', uniq('bad'));
        const before = dead.length;
        const h = bad.headers() ?? natsHeaders();
        const ack = await js.publish(subject, bad.body, { headers: h, msgID: uniq('msg') });
        await eventually(() => dead.length === before + 1);
        const dl = dead[before];
        if (dl === undefined) throw new Error('no dead letter');
        expectDeadLetter(dl, service, subject, bad, bad.headers() === undefined ? undefined : h);

        const name = uniq('good');
        await producer.bus.jsPublish(PodEvent, k8sObjectSubject('Pod', 'default', name), pod(name));
        await eventually(() => handled.includes(name));
        const jsm = await jetstreamManager(raw);
        // Terminated, so never redelivered nor pending. The good message's ack travels on the
        // consumer's connection and this query on another: wait for the server to have both (an
        // unterminated bad message would stay pending past the wait and fail it).
        const info = await eventually(async () => {
          const i = await jsm.consumers.info(K8sStream.name, 'dl-js');
          return i.num_ack_pending === 0 ? i : undefined;
        });
        expect(info.num_redelivered).toBe(0);
        expect(info.ack_floor.stream_seq).toBeGreaterThan(ack.seq);
        expect(dead.length).toBe(before + 1);
      },
    );

    it('dead-letters a message whose handler keeps failing after maxDeliver, as handler-failed', async () => {
      const before = dead.length;
      const name = uniq('fail');
      const subject = k8sObjectSubject('Pod', 'default', name);
      await producer.bus.jsPublish(PodEvent, subject, pod(name));
      await eventually(() => dead.length === before + 1);
      const dl = dead[before];
      expect(dl === undefined ? undefined : reasonOf(dl)).toBe(DeadLetterReason.handlerFailed);
      expect(dl?.headers?.get(DeadLetterHeader.detail)).toContain(`cannot handle ${name}`);
      expect(failing.get(name)).toBe(2);
      expect(
        await counterValue(consumer.registry, 'dyad_bus_dead_letters_total', {
          reason: 'handler-failed',
        }),
      ).toBe(1);
      const good = uniq('good');
      await producer.bus.jsPublish(PodEvent, k8sObjectSubject('Pod', 'default', good), pod(good));
      await eventually(() => handled.includes(good));
    });

    it('stores dead letters in the DLQ stream, with JetStream control headers renamed', async () => {
      const js = jetstream(raw);
      const subject = k8sObjectSubject('Pod', 'default', uniq('ttl'));
      const h = ceHeaders('io.dyad.k8s.pod.v9');
      // A tombstone-like message with a TTL: kept as is, the DLQ stream (no TTLs) would refuse it.
      await js.publish(subject, enc.encode(validPodJson), {
        headers: h,
        ttl: '1h',
        msgID: uniq('m'),
      });
      const jsm = await jetstreamManager(raw);
      const stored = await eventually(async () => {
        const m = await jsm.streams.getMessage(DeadLetterStream.name, {
          last_by_subj: deadLetterSubject(service),
        });
        return m?.header.get(DeadLetterHeader.subject) === subject ? m : undefined;
      });
      expect(stored.header.get(DeadLetterHeader.reason)).toBe('unknown-type');
      expect(stored.header.get(`${ORIGINAL_NATS_HEADER_PREFIX}Nats-TTL`)).toBe('1h');
      expect(stored.header.has('Nats-TTL')).toBe(false);
      expect(stored.header.get('ce-type')).toBe('io.dyad.k8s.pod.v9');
    });
  });
});
