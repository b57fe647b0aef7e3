import { DeadLetterHeader, DeadLetterStream, K8sStream } from '@dyad/contracts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { diffConfig } from '../src/bootstrap.ts';
import { durableConfig } from '../src/consume.ts';
import { headerValue } from '../src/headers.ts';
import {
  ConfigFileError,
  DeadLetterReason,
  ORIGINAL_NATS_HEADER_PREFIX,
  deadLetterHeaders,
  defaultNakDelayMs,
  installSignalHandlers,
  natsSettings,
  readStreamReplicas,
  streamConfig,
  subjectRoot,
} from '../src/index.ts';

describe('subjectRoot keeps metric labels few', () => {
  it.each([
    ['dyad.k8s.v1.pod.default.web-0', 'dyad.k8s.v1'],
    ['dyad.ipam.v1.allocate', 'dyad.ipam.v1'],
    ['_INBOX.ab12cd.9', '_INBOX'],
    ['foreign.thing.x.y', 'foreign'],
  ])('%s → %s', (subject, root) => expect(subjectRoot(subject)).toBe(root));
});

describe('deadLetterHeaders', () => {
  it('keeps the original headers, renames Nats-* ones, and adds the reason set', () => {
    const orig = natsHeaders();
    orig.set('ce-type', 'io.dyad.k8s.pod.v9');
    orig.set('Nats-TTL', '1h');
    orig.set('Nats-Msg-Id', 'abc');
    orig.append('x-multi', 'a');
    orig.append('x-multi', 'b');
    const now = new Date('2030-01-02T03:04:05.000Z');
    const h = deadLetterHeaders(
      'kube-bridge',
      { subject: 'dyad.k8s.v1.pod.default.x', data: new Uint8Array(), headers: orig },
      DeadLetterReason.unknownType,
      'line one\r\nline two',
      now,
    );
    expect(h.get('ce-type')).toBe('io.dyad.k8s.pod.v9');
    expect(h.values('x-multi')).toEqual(['a', 'b']);
    expect(h.has('Nats-TTL')).toBe(false);
    expect(h.has('Nats-Msg-Id')).toBe(false);
    expect(h.get(`${ORIGINAL_NATS_HEADER_PREFIX}Nats-TTL`)).toBe('1h');
    expect(h.get(`${ORIGINAL_NATS_HEADER_PREFIX}Nats-Msg-Id`)).toBe('abc');
    expect(h.get(DeadLetterHeader.reason)).toBe('unknown-type');
    expect(h.get(DeadLetterHeader.detail)).toBe('line one line two');
    expect(h.get(DeadLetterHeader.subject)).toBe('dyad.k8s.v1.pod.default.x');
    expect(h.get(DeadLetterHeader.service)).toBe('kube-bridge');
    expect(h.get(DeadLetterHeader.time)).toBe('2030-01-02T03:04:05.000Z');
  });

  it('caps long details so the header stays a sane size', () => {
    expect(headerValue('x'.repeat(5000)).length).toBe(1024);
  });
});

describe('streamConfig and diffConfig', () => {
  it('maps a StreamSpec to server config with server defaults filled in', () => {
    const cfg = streamConfig(K8sStream);
    expect(cfg).toMatchObject({
      name: 'DYAD_K8S',
      subjects: ['dyad.k8s.v1.>'],
      storage: 'file',
      max_msgs_per_subject: 1,
      allow_msg_ttl: true,
      duplicate_window: 120_000 * 1e6,
      max_age: 0,
      max_bytes: -1,
    });
    expect(streamConfig(DeadLetterStream).max_age).toBe(7 * 24 * 3600 * 1000 * 1e6);
    expect(streamConfig(K8sStream).num_replicas).toBe(1);
    expect(streamConfig(K8sStream, 3).num_replicas).toBe(3);
  });

  it('reads a server echo without num_replicas as one replica, and names a replica change', () => {
    expect(diffConfig({}, { num_replicas: 1 })).toEqual([]);
    expect(diffConfig({ num_replicas: 1 }, { num_replicas: 3 })).toEqual(['num_replicas']);
  });

  it('sees no difference in the server echo of the same config, and names what differs', () => {
    const full = streamConfig(K8sStream);
    const want = {
      description: full.description,
      subjects: full.subjects,
      max_msgs_per_subject: full.max_msgs_per_subject,
      max_age: full.max_age,
      max_bytes: full.max_bytes,
      duplicate_window: full.duplicate_window,
      allow_msg_ttl: full.allow_msg_ttl,
    };
    const echo = { ...want, subjects: ['dyad.k8s.v1.>'], allow_msg_ttl: true };
    expect(diffConfig(echo, want)).toEqual([]);
    expect(diffConfig({ ...echo, allow_msg_ttl: undefined }, want)).toEqual(['allow_msg_ttl']);
    expect(diffConfig({ ...echo, subjects: ['a.>'], max_bytes: 5 }, want).sort()).toEqual([
      'max_bytes',
      'subjects',
    ]);
  });
});

describe('durableConfig', () => {
  it('asks the server for one delivery more than the bus allows, so a crash loop ends in the DLQ', () => {
    const cfg = durableConfig({ stream: 'S', maxDeliver: 3, filterSubjects: ['a.>'] }, 'd');
    expect(cfg).toMatchObject({
      durable_name: 'd',
      ack_policy: 'explicit',
      deliver_policy: 'all',
      max_deliver: 4,
      filter_subject: 'a.>',
    });
    expect(
      durableConfig({ stream: 'S', filterSubjects: ['a.>', 'b.>'] }, 'd').filter_subjects,
    ).toEqual(['a.>', 'b.>']);
    expect(durableConfig({ stream: 'S', startSeq: 7 }, 'd')).toMatchObject({
      deliver_policy: 'by_start_sequence',
      opt_start_seq: 7,
    });
  });

  it('backs off nak delays, capped', () => {
    expect([1, 2, 3, 4, 10].map(defaultNakDelayMs)).toEqual([1000, 2000, 4000, 8000, 30_000]);
  });
});

describe('installSignalHandlers', () => {
  it('drains once on the first signal, runs hooks in order, exits 0; a second signal exits 1', async () => {
    const order: string[] = [];
    let releaseDrain: () => void = () => {};
    const drained = new Promise<void>((r) => (releaseDrain = r));
    const exits: number[] = [];
    const uninstall = installSignalHandlers(
      {
        drain: async () => {
          order.push('drain');
          await drained;
        },
      },
      {
        signals: ['SIGUSR2'],
        beforeDrain: () => void order.push('before'),
        afterDrain: () => void order.push('after'),
        exit: (code) => exits.push(code),
      },
    );
    try {
      process.emit('SIGUSR2', 'SIGUSR2');
      process.emit('SIGUSR2', 'SIGUSR2');
      expect(exits).toEqual([1]);
      releaseDrain();
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      expect(order).toEqual(['before', 'drain', 'after']);
      expect(exits).toEqual([1, 0]);
    } finally {
      uninstall();
    }
    expect(process.listenerCount('SIGUSR2')).toBe(0);
  });
});

describe('jetstream-replicas from dyad-config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dyad-bus-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const withValue = (text: string | undefined): string => {
    const d = mkdtempSync(join(dir, 'c-'));
    if (text !== undefined) writeFileSync(join(d, 'jetstream-replicas'), text);
    return d;
  };

  it('is one replica without a config directory, the mounted value with one', () => {
    expect(natsSettings({ NATS_URL: 'nats://a:4222' }).streamReplicas).toBe(1);
    const d = withValue('3\n');
    expect(natsSettings({ NATS_URL: 'nats://a:4222', DYAD_CONFIG_DIR: d }).streamReplicas).toBe(3);
    expect(readStreamReplicas(withValue('5'))).toBe(5);
  });

  it("refuses to connect without credentials when dyad-config's environment says production", () => {
    const d = withValue('1');
    // No config directory (unit and integration tests), or no key: no credentials needed.
    expect(natsSettings({ NATS_URL: 'nats://a:4222' }).credsFile).toBeUndefined();
    expect(natsSettings({ NATS_URL: 'nats://a:4222', DYAD_CONFIG_DIR: d }).credsFile).toBe(
      undefined,
    );
    writeFileSync(join(d, 'environment'), 'production\n');
    expect(() => natsSettings({ NATS_URL: 'nats://a:4222', DYAD_CONFIG_DIR: d })).toThrow(
      /neither NATS_CREDS nor NATS_TOKEN_FILE is set: .*environment says production/,
    );
    // a shared static token is no identity: refused as well
    expect(() =>
      natsSettings({ NATS_URL: 'nats://a:4222', NATS_TOKEN: 't', DYAD_CONFIG_DIR: d }),
    ).toThrow(/neither NATS_CREDS nor NATS_TOKEN_FILE/);
    expect(
      natsSettings({ NATS_URL: 'nats://a:4222', NATS_CREDS: '/c', DYAD_CONFIG_DIR: d }).credsFile,
    ).toBe('/c');
    const viaCallout = natsSettings({
      NATS_URL: 'nats://a:4222',
      NATS_TOKEN_FILE: '/t',
      NATS_IDENTITY: 'agent-node-1',
      DYAD_CONFIG_DIR: d,
    });
    expect([viaCallout.tokenFile, viaCallout.identity]).toEqual(['/t', 'agent-node-1']);
    expect(() =>
      natsSettings({ NATS_URL: 'nats://a:4222', NATS_TOKEN_FILE: '/t', DYAD_CONFIG_DIR: d }),
    ).toThrow(/without NATS_IDENTITY/);
    writeFileSync(join(d, 'environment'), 'test\n');
    expect(natsSettings({ NATS_URL: 'nats://a:4222', DYAD_CONFIG_DIR: d }).streamReplicas).toBe(1);
  });

  it('refuses a missing key or a count the ConfigMap schema refuses, naming the file', () => {
    expect(() => readStreamReplicas(withValue(undefined))).toThrow(ConfigFileError);
    expect(() => readStreamReplicas(withValue('0'))).toThrow(
      /jetstream-replicas: '0' is between 1 and 5/,
    );
    expect(() => readStreamReplicas(withValue('three'))).toThrow(/a decimal number/);
  });
});
