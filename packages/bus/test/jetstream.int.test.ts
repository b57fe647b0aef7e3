import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { K8sStream, PodEvent, k8sObjectSubject } from '@dyad/contracts';
import type { KvBucketSpec, StreamSpec } from '@dyad/contracts';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { jetstreamManager } from '@nats-io/jetstream';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigConflictError, PublishError, kvStreamName } from '../src/index.ts';
import type { JsDelivery } from '../src/index.ts';
import type { PayloadOf } from '@dyad/contracts';
import {
  Teardown,
  Note,
  collectDeadLetters,
  eventually,
  pod,
  rawConnection,
  testBus,
  uniq,
} from './helpers.ts';
import type { TestBus } from './helpers.ts';

const NOTES: StreamSpec = {
  name: 'TEST_NOTES',
  description: 'notes for tests',
  subjects: ['dyad.test.v1.note.>'],
  storage: 'file',
  duplicateWindowMs: 60_000,
};

describe('JetStream', () => {
  let nats: NatsServer;
  let raw: NatsConnection;
  let jsm: JetStreamManager;
  let t: TestBus;

  const teardown = new Teardown();
  beforeAll(async () => {
    nats = await teardown.add(startNats(), (s) => s.stop());
    raw = await teardown.add(rawConnection(nats.url), (c) => c.close());
    jsm = await jetstreamManager(raw);
    t = await teardown.add(testBus(nats.url, 'js-test'), (b) => b.bus.close());
  });
  afterAll(() => teardown.run());

  describe('ensureStreams', () => {
    it('creates, then is a no-op, then updates what changed', async () => {
      const spec: StreamSpec = {
        ...NOTES,
        name: 'TEST_ENSURE',
        subjects: ['dyad.test.v1.ensure.>'],
      };
      expect(await t.bus.ensureStreams([spec])).toEqual([
        { name: 'TEST_ENSURE', action: 'created', changed: [] },
      ]);
      expect(await t.bus.ensureStreams([spec])).toEqual([
        { name: 'TEST_ENSURE', action: 'unchanged', changed: [] },
      ]);
      const changed = await t.bus.ensureStreams([
        { ...spec, description: 'changed', maxAgeMs: 3_600_000 },
      ]);
      expect(changed[0]?.action).toBe('updated');
      expect([...(changed[0]?.changed ?? [])].sort()).toEqual(['description', 'max_age']);
      const info = await jsm.streams.info('TEST_ENSURE');
      expect(info.config.description).toBe('changed');
      expect(info.config.max_age).toBe(3_600_000 * 1_000_000);
      expect(info.config.duplicate_window).toBe(60_000 * 1_000_000);
    });

    it('declares the contracts streams as specified', async () => {
      await t.bus.ensureStreams([K8sStream]);
      const info = await jsm.streams.info(K8sStream.name);
      expect(info.config.subjects).toEqual(['dyad.k8s.v1.>']);
      expect(info.config.max_msgs_per_subject).toBe(1);
      expect(info.config.allow_msg_ttl).toBe(true);
      expect(info.config.storage).toBe('file');
      expect((await t.bus.ensureStreams([K8sStream]))[0]?.action).toBe('unchanged');
    });

    it('refuses a storage change with a clear ConfigConflictError', async () => {
      const spec: StreamSpec = {
        ...NOTES,
        name: 'TEST_STORAGE',
        subjects: ['dyad.test.v1.storage.>'],
      };
      await t.bus.ensureStreams([spec]);
      const err = await t.bus
        .ensureStreams([{ ...spec, storage: 'memory' }])
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigConflictError);
      expect((err as Error).message).toMatch(
        /TEST_STORAGE exists with file storage, wanted memory/,
      );
    });
  });

  describe('ensureKv and kv', () => {
    it('creates a bucket idempotently, updates history, and hands out a working KV', async () => {
      const spec: KvBucketSpec = {
        bucket: 'test_kv',
        description: 'kv for tests',
        history: 3,
        storage: 'file',
      };
      expect((await t.bus.ensureKv([spec]))[0]).toEqual({
        name: kvStreamName('test_kv'),
        action: 'created',
        changed: [],
      });
      expect((await t.bus.ensureKv([spec]))[0]?.action).toBe('unchanged');
      const updated = await t.bus.ensureKv([{ ...spec, history: 5 }]);
      expect(updated[0]).toEqual({
        name: 'KV_test_kv',
        action: 'updated',
        changed: ['max_msgs_per_subject'],
      });
      const kv = await t.bus.kv('test_kv');
      const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
      const first = await kv.put('node-1', enc('a'));
      expect(typeof first).toBe('number');
      const second = await kv.put('node-1', enc('b'), Number(first));
      expect(second).toBe(Number(first) + 1);
      // a lost race is a value, not an exception
      expect(await kv.put('node-1', enc('c'), Number(first))).toBe('conflict');
      expect(await kv.create('node-1', enc('c'))).toBe('conflict');
      expect(await kv.delete('node-1', Number(first))).toBe(false);
      expect(await kv.values('>')).toEqual([{ key: 'node-1', revision: second, value: 'b' }]);
      expect(await kv.delete('node-1', Number(second))).toBe(true);
      expect((await kv.get('node-1'))?.operation).toBe('DEL');
      expect(await kv.keys()).toEqual([]);
    });
  });

  describe('jsPublish', () => {
    beforeAll(async () => {
      await t.bus.ensureStreams([NOTES, K8sStream]);
    });

    it('acks with the stream sequence and drops a repeated Nats-Msg-Id', async () => {
      const first = await t.bus.jsPublish(
        Note,
        'dyad.test.v1.note.dedupe',
        { n: 1 },
        { msgId: 'note-1' },
      );
      const again = await t.bus.jsPublish(
        Note,
        'dyad.test.v1.note.dedupe',
        { n: 1 },
        { msgId: 'note-1' },
      );
      expect(first.stream).toBe('TEST_NOTES');
      expect(first.duplicate).toBe(false);
      expect(again.duplicate).toBe(true);
      expect(again.seq).toBe(first.seq);
    });

    it('sets Nats-TTL where the stream allows it, and fails with PublishError where it does not', async () => {
      const subject = k8sObjectSubject('Pod', 'default', 'ttl-0');
      await t.bus.jsPublish(PodEvent, subject, { ...pod('ttl-0'), op: 'delete' }, { ttl: '5m' });
      const stored = await jsm.streams.getMessage(K8sStream.name, { last_by_subj: subject });
      expect(stored?.header.get('Nats-TTL')).toBe('5m');
      expect(stored?.header.get('ce-source')).toBe('/dyad/js-test');
      await expect(
        t.bus.jsPublish(Note, 'dyad.test.v1.note.ttl', { n: 1 }, { ttl: '5m' }),
      ).rejects.toBeInstanceOf(PublishError);
    });

    it('fails with PublishError when no stream takes the subject', async () => {
      await expect(t.bus.jsPublish(Note, 'dyad.test.v1.unstored', { n: 1 })).rejects.toBeInstanceOf(
        PublishError,
      );
    });
  });

  describe('snapshot', () => {
    it('returns the last valid value per subject, across batches, and cleans up its consumer', async () => {
      const spec: StreamSpec = {
        ...NOTES,
        name: 'TEST_SNAP',
        subjects: ['dyad.test.v1.snap.>'],
        maxMsgsPerSubject: 1,
      };
      await t.bus.ensureStreams([spec]);
      expect((await t.bus.snapshot([Note], { stream: 'TEST_SNAP' })).size).toBe(0);

      for (let i = 0; i < 300; i++)
        await t.bus.jsPublish(Note, `dyad.test.v1.snap.a.${i}`, { n: i });
      await t.bus.jsPublish(Note, 'dyad.test.v1.snap.a.7', { n: 1007 });
      await t.bus.jsPublish(Note, 'dyad.test.v1.snap.b.1', { n: 1 });
      // a stored message that does not decode replaces a good one on its subject
      raw.publish('dyad.test.v1.snap.a.9', new TextEncoder().encode('not an event'));
      await raw.flush();
      const dead = collectDeadLetters(raw, 'js-test');
      await raw.flush();

      const snap = await t.bus.snapshot([Note], {
        stream: 'TEST_SNAP',
        filterSubjects: ['dyad.test.v1.snap.a.>'],
      });
      expect(snap.size).toBe(299);
      expect(snap.get('dyad.test.v1.snap.a.7')?.value.n).toBe(1007);
      expect(snap.get('dyad.test.v1.snap.a.299')?.value.n).toBe(299);
      expect(snap.has('dyad.test.v1.snap.a.9')).toBe(false);
      expect(snap.has('dyad.test.v1.snap.b.1')).toBe(false);
      await eventually(() => dead.length === 1);
      expect(dead[0]?.headers?.get('dyad-dlq-reason')).toBe('not-cloudevent');
      const consumers = [];
      for await (const c of jsm.consumers.list('TEST_SNAP')) consumers.push(c.name);
      expect(consumers).toEqual([]);
    });
    it('snapshotEach hands over each value as it reads it: undefined for a refused one, the last sequence read', async () => {
      const spec: StreamSpec = {
        ...NOTES,
        name: 'TEST_SNAP_EACH',
        subjects: ['dyad.test.v1.each.>'],
        maxMsgsPerSubject: 1,
      };
      await t.bus.ensureStreams([spec]);
      const none = await t.bus.snapshotEach([Note], { stream: 'TEST_SNAP_EACH' }, () => {
        throw new Error('nothing to read');
      });
      expect(none).toEqual({ messages: 0, lastSeq: 0 });
      for (let i = 0; i < 300; i++) await t.bus.jsPublish(Note, `dyad.test.v1.each.${i}`, { n: i });
      raw.publish('dyad.test.v1.each.9', new TextEncoder().encode('not an event'));
      await raw.flush();
      const last = await t.bus.jsPublish(Note, 'dyad.test.v1.each.7', { n: 1007 });
      const seen: Array<[string, number | undefined]> = [];
      const read = await t.bus.snapshotEach([Note], { stream: 'TEST_SNAP_EACH' }, (subject, d) => {
        seen.push([subject, d?.value.n]);
      });
      expect(read).toEqual({ messages: 300, lastSeq: last.seq });
      // stream order: each subject once, with its last value; the refused one as undefined
      expect(seen[0]).toEqual(['dyad.test.v1.each.0', 0]);
      expect(seen.filter(([s]) => s === 'dyad.test.v1.each.9')).toEqual([
        ['dyad.test.v1.each.9', undefined],
      ]);
      expect(seen.at(-1)).toEqual(['dyad.test.v1.each.7', 1007]);
      expect(new Set(seen.map(([s]) => s)).size).toBe(300);
    });
  });

  describe('purgeSubjects', () => {
    it("removes the matching subjects' messages and nothing else; no stream is nothing to purge", async () => {
      const spec: StreamSpec = { ...NOTES, name: 'TEST_PURGE', subjects: ['dyad.test.v1.purge.>'] };
      await t.bus.ensureStreams([spec]);
      for (const s of ['n1.a', 'n1.b', 'n1.b', 'n2.a', 'n10.a'])
        await t.bus.jsPublish(Note, `dyad.test.v1.purge.${s}`, { n: 1 });
      expect(await t.bus.purgeSubjects('TEST_PURGE', 'dyad.test.v1.purge.n1.>')).toBe(3);
      const left = await t.bus.snapshot([Note], { stream: 'TEST_PURGE' });
      expect([...left.keys()].sort()).toEqual([
        'dyad.test.v1.purge.n10.a',
        'dyad.test.v1.purge.n2.a',
      ]);
      expect(await t.bus.purgeSubjects('TEST_PURGE', 'dyad.test.v1.purge.n1.>')).toBe(0);
      expect(await t.bus.purgeSubjects('TEST_NO_SUCH_STREAM', '>')).toBe(0);
    });
  });

  describe('consume', () => {
    it('delivers a durable consumer its messages in order and acks them', async () => {
      const spec: StreamSpec = { ...NOTES, name: 'TEST_ORDER', subjects: ['dyad.test.v1.order.>'] };
      await t.bus.ensureStreams([spec]);
      for (let n = 1; n <= 5; n++) await t.bus.jsPublish(Note, `dyad.test.v1.order.${n}`, { n });
      const got: JsDelivery<PayloadOf<typeof Note>>[] = [];
      const c = await t.bus.consume([Note], { stream: 'TEST_ORDER', durable: 'orderly' }, (d) => {
        got.push(d);
      });
      await eventually(() => got.length === 5);
      expect(got.map((d) => d.value.n)).toEqual([1, 2, 3, 4, 5]);
      expect(got.map((d) => d.streamSeq)).toEqual([1, 2, 3, 4, 5]);
      expect(got.every((d) => d.deliveryCount === 1 && !d.redelivered)).toBe(true);
      await eventually(
        async () => (await jsm.consumers.info('TEST_ORDER', 'orderly')).num_ack_pending === 0,
      );
      await c.stop();
      // a durable remembers its place: a new consume only sees newer messages
      await t.bus.jsPublish(Note, 'dyad.test.v1.order.6', { n: 6 });
      const later: number[] = [];
      const c2 = await t.bus.consume([Note], { stream: 'TEST_ORDER', durable: 'orderly' }, (d) => {
        later.push(d.value.n);
      });
      await eventually(() => later.length === 1);
      expect(later).toEqual([6]);
      await c2.stop();
    });

    it('replays current state with an ordered consumer (last per subject)', async () => {
      const spec: StreamSpec = {
        ...NOTES,
        name: 'TEST_STATE',
        subjects: ['dyad.test.v1.state.>'],
        maxMsgsPerSubject: 1,
      };
      await t.bus.ensureStreams([spec]);
      await t.bus.jsPublish(Note, 'dyad.test.v1.state.a', { n: 1 });
      await t.bus.jsPublish(Note, 'dyad.test.v1.state.a', { n: 2 });
      await t.bus.jsPublish(Note, 'dyad.test.v1.state.b', { n: 3 });
      const got = new Map<string, number>();
      const c = await t.bus.consume(
        [Note],
        {
          stream: 'TEST_STATE',
          deliverPolicy: 'last_per_subject',
          filterSubjects: ['dyad.test.v1.state.>'],
        },
        (d) => {
          got.set(d.subject, d.value.n);
        },
      );
      await eventually(() => got.size === 2);
      expect(Object.fromEntries(got)).toEqual({
        'dyad.test.v1.state.a': 2,
        'dyad.test.v1.state.b': 3,
      });
      await c.stop();
    });

    it('updates a durable in place but refuses to move its start position', async () => {
      const spec: StreamSpec = {
        ...NOTES,
        name: 'TEST_DURABLE',
        subjects: ['dyad.test.v1.durable.>'],
      };
      await t.bus.ensureStreams([spec]);
      const c = await t.bus.consume(
        [Note],
        { stream: 'TEST_DURABLE', durable: 'd1', ackWaitMs: 10_000 },
        () => {},
      );
      await c.stop();
      const c2 = await t.bus.consume(
        [Note],
        { stream: 'TEST_DURABLE', durable: 'd1', ackWaitMs: 20_000 },
        () => {},
      );
      expect((await jsm.consumers.info('TEST_DURABLE', 'd1')).config.ack_wait).toBe(
        20_000 * 1_000_000,
      );
      await c2.stop();
      await expect(
        t.bus.consume(
          [Note],
          { stream: 'TEST_DURABLE', durable: 'd1', deliverPolicy: 'new' },
          () => {},
        ),
      ).rejects.toBeInstanceOf(ConfigConflictError);
    });

    it('drain waits for the handler in flight and acks it before closing', async () => {
      const spec: StreamSpec = { ...NOTES, name: 'TEST_DRAIN', subjects: ['dyad.test.v1.drain.>'] };
      await t.bus.ensureStreams([spec]);
      const d = await testBus(nats.url, 'drainer');
      let release: () => void = () => {};
      const gate = new Promise<void>((r) => (release = r));
      let started = false;
      let finished = false;
      await d.bus.consume([Note], { stream: 'TEST_DRAIN', durable: 'drainer' }, async () => {
        started = true;
        await gate;
        finished = true;
      });
      await t.bus.jsPublish(Note, 'dyad.test.v1.drain.1', { n: 1 });
      await eventually(() => started);
      const draining = d.bus.drain();
      expect(finished).toBe(false);
      release();
      await draining;
      expect(finished).toBe(true);
      expect(d.bus.isConnected()).toBe(false);
      const info = await jsm.consumers.info('TEST_DRAIN', 'drainer');
      expect(info.num_ack_pending).toBe(0);
      expect(info.ack_floor.stream_seq).toBe(1);
    });

    it('redelivers a message to a new consumer after the consumer process died before acking', async () => {
      const spec: StreamSpec = { ...NOTES, name: 'TEST_CRASH', subjects: ['dyad.test.v1.crash.>'] };
      await t.bus.ensureStreams([spec]);
      const fixture = fileURLToPath(new URL('./fixtures/crash-consumer.ts', import.meta.url));
      const child = spawn(process.execPath, [fixture, nats.url, 'TEST_CRASH', 'crashy'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      const id = uniq('crash');
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr.on('data', (b: Buffer) => (err += b.toString()));
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      try {
        await eventually(() => out.includes('ready') || child.exitCode !== null);
        expect(err).toBe('');
        await t.bus.jsPublish(Note, 'dyad.test.v1.crash.1', { n: 1, text: id });
        await eventually(() => out.includes('got 1 delivery 1'));
      } finally {
        child.kill('SIGKILL');
        await exited;
      }
      const got: JsDelivery<PayloadOf<typeof Note>>[] = [];
      const c = await t.bus.consume(
        [Note],
        { stream: 'TEST_CRASH', durable: 'crashy', ackWaitMs: 1000 },
        (d) => {
          got.push(d);
        },
      );
      await eventually(() => got.length === 1);
      expect(got[0]?.value).toEqual({ n: 1, text: id });
      expect(got[0]?.redelivered).toBe(true);
      expect(got[0]?.deliveryCount).toBe(2);
      await eventually(
        async () => (await jsm.consumers.info('TEST_CRASH', 'crashy')).num_ack_pending === 0,
      );
      await c.stop();
    });
  });
});
