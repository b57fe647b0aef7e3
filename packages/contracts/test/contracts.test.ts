import { describe, expect, it } from 'vitest';
import {
  ALL_CONTRACTS,
  CONTRACTS_BY_TYPE,
  Header,
  MAX_EVENT_BYTES,
  PodEvent,
  RejectReason,
  ServiceEvent,
  decodeEvent,
  defineMessage,
  encodeEvent,
} from '../src/index.ts';
import { z } from 'zod';
import { VALID_SAMPLES } from './samples.ts';

const enc = (s: string) => new TextEncoder().encode(s);

describe('every contract', () => {
  it('has a valid sample, so no contract goes untested', () => {
    const sampled = new Set(VALID_SAMPLES.map(([c]) => c.type));
    expect([...sampled].sort()).toEqual(ALL_CONTRACTS.map((c) => c.type).sort());
  });

  it.each(VALID_SAMPLES.map(([c, v]) => [c.type, c, v] as const))(
    '%s round-trips through CloudEvents',
    (_, c, v) => {
      const e = encodeEvent(c, v as never, { source: '/dyad/test', subject: 'x' });
      expect(e.headers[Header.type]).toBe(c.type);
      expect(e.headers[Header.specversion]).toBe('1.0');
      const d = decodeEvent([c], e.headers, e.body, CONTRACTS_BY_TYPE);
      expect(d.ok).toBe(true);
      if (d.ok) {
        expect(d.value).toEqual(c.schema.parse(v));
        expect(d.meta.subject).toBe('x');
        expect(d.meta.source).toBe('/dyad/test');
      }
    },
  );
});

describe('invalid payloads', () => {
  const pod = VALID_SAMPLES.find(([c]) => c === PodEvent)?.[1] as {
    object: { status: { podIPs: string[] } };
  };

  it('a pod IP that is no address is refused with the path to the field', () => {
    const bad = structuredClone(pod);
    bad.object.status.podIPs = ['fd00::1', 'not-an-ip'];
    expect(() => encodeEvent(PodEvent, bad as never, { source: '/t' })).toThrow(
      /object\.status\.podIPs\[1\]/,
    );
    const d = decodeEvent([PodEvent], headersFor(PodEvent.type), enc(JSON.stringify(bad)));
    expect(d).toMatchObject({ ok: false, reason: RejectReason.schema });
    if (!d.ok) expect(d.detail).toContain('object.status.podIPs[1]');
  });

  it('a service with an unknown ipFamilyPolicy is refused', () => {
    const svc = structuredClone(VALID_SAMPLES.find(([c]) => c === ServiceEvent)?.[1]) as {
      object: { spec: { ipFamilyPolicy: string } };
    };
    svc.object.spec.ipFamilyPolicy = 'DualStackPlease';
    const d = decodeEvent([ServiceEvent], headersFor(ServiceEvent.type), enc(JSON.stringify(svc)));
    expect(d).toMatchObject({ ok: false, reason: RejectReason.schema });
    if (!d.ok) expect(d.detail).toContain('object.spec.ipFamilyPolicy');
  });

  it('an op other than upsert/delete is refused', () => {
    const d = decodeEvent(
      [PodEvent],
      headersFor(PodEvent.type),
      enc(JSON.stringify({ ...pod, op: 'patch' })),
    );
    expect(d).toMatchObject({ ok: false, reason: RejectReason.schema });
  });
});

describe('decoder reject reasons', () => {
  const good = encodeEvent(PodEvent, VALID_SAMPLES.find(([c]) => c === PodEvent)?.[1] as never, {
    source: '/t',
  });

  it('no CloudEvent headers', () => {
    expect(decodeEvent([PodEvent], {}, good.body)).toMatchObject({
      ok: false,
      reason: 'not-cloudevent',
    });
  });
  it('another spec version', () => {
    const h = { ...good.headers, [Header.specversion]: '0.3' };
    expect(decodeEvent([PodEvent], h, good.body)).toMatchObject({
      ok: false,
      reason: 'unsupported-specversion',
    });
  });
  it('unknown type, including an unknown version of a known type', () => {
    const h = { ...good.headers, [Header.type]: 'io.dyad.k8s.pod.v9' };
    expect(decodeEvent([PodEvent], h, good.body, CONTRACTS_BY_TYPE)).toMatchObject({
      ok: false,
      reason: 'unknown-type',
      type: 'io.dyad.k8s.pod.v9',
    });
  });
  it('a known type sent to a consumer that does not accept it', () => {
    const h = { ...good.headers, [Header.type]: ServiceEvent.type };
    expect(decodeEvent([PodEvent], h, good.body, CONTRACTS_BY_TYPE)).toMatchObject({
      ok: false,
      reason: 'unexpected-type',
    });
  });
  it('a truncated payload', () => {
    const d = decodeEvent([PodEvent], good.headers, good.body.subarray(0, good.body.length - 7));
    expect(d).toMatchObject({ ok: false, reason: 'invalid-json' });
  });
  it('a payload cut inside a multi-byte character is invalid, not mangled', () => {
    const body = enc('{"op":"upsert","x":"é"}').subarray(0, 21);
    expect(decodeEvent([PodEvent], good.headers, body)).toMatchObject({
      ok: false,
      reason: 'invalid-json',
    });
  });
  it('an oversized payload, refused before parsing', () => {
    const body = new Uint8Array(MAX_EVENT_BYTES + 1).fill(0x20);
    expect(decodeEvent([PodEvent], good.headers, body)).toMatchObject({
      ok: false,
      reason: 'oversized',
    });
  });
  it('a non-JSON content type', () => {
    const h = { ...good.headers, [Header.contentType]: 'application/protobuf' };
    expect(decodeEvent([PodEvent], h, good.body)).toMatchObject({
      ok: false,
      reason: 'unsupported-content-type',
    });
  });
  it('a non-JSON ce-datacontenttype (the CloudEvents NATS binding name)', () => {
    expect(good.headers[Header.datacontenttype]).toBe('application/json');
    const h = { ...good.headers, [Header.datacontenttype]: 'application/cbor' };
    expect(decodeEvent([PodEvent], h, good.body)).toMatchObject({
      ok: false,
      reason: 'unsupported-content-type',
    });
  });
  it('reads headers through a getter, as NATS headers are read', () => {
    const d = decodeEvent([PodEvent], (n) => good.headers[n], good.body);
    expect(d.ok).toBe(true);
  });
});

describe('defineMessage', () => {
  it('refuses a type whose version suffix disagrees with its version', () => {
    expect(() =>
      defineMessage({
        type: 'io.dyad.test.thing.v1',
        version: 2,
        schema: z.object({}),
        description: '',
        subjectPattern: 'x',
      }),
    ).toThrow(/v2/);
  });
  it('keeps type names unique across all contracts', () => {
    expect(new Set(ALL_CONTRACTS.map((c) => c.type)).size).toBe(ALL_CONTRACTS.length);
  });
});

function headersFor(type: string): Record<string, string> {
  return {
    [Header.specversion]: '1.0',
    [Header.type]: type,
    [Header.id]: '1',
    [Header.source]: '/t',
  };
}
