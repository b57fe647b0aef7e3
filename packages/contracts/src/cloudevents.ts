import type { z } from 'zod';
import type { MessageContract, PayloadOf } from './contract.ts';
import { InvalidOutgoingMessageError } from './errors.ts';

/**
 * CloudEvents 1.0 over NATS in binary content mode: context attributes travel as `ce-*` headers,
 * the payload is the JSON body. Binary mode lets a consumer route on the type without parsing
 * the body, and keeps the body exactly the schema's JSON.
 */
export const CE_SPECVERSION = '1.0';
export const CONTENT_TYPE_JSON = 'application/json';

export const Header = {
  specversion: 'ce-specversion',
  id: 'ce-id',
  source: 'ce-source',
  type: 'ce-type',
  time: 'ce-time',
  subject: 'ce-subject',
  dataschema: 'ce-dataschema',
  /** The CloudEvents NATS binding's name for the body's media type. */
  datacontenttype: 'ce-datacontenttype',
  /** The same media type for NATS tools that know no CloudEvents. */
  contentType: 'content-type',
  traceparent: 'traceparent',
  tracestate: 'tracestate',
} as const;
export type Header = (typeof Header)[keyof typeof Header];

/** Payloads above this are refused on both sides; it sits well under nats-server's 1 MiB max_payload. */
export const MAX_EVENT_BYTES = 256 * 1024;

export function dataSchemaUri(type: string): string {
  return `urn:dyad:schema:${type}`;
}

export interface EventMeta {
  readonly id: string;
  readonly source: string;
  readonly type: string;
  readonly time: string;
  readonly subject?: string;
}

export interface EncodedEvent {
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
}

export interface EncodeOptions {
  /** CloudEvents `source`, e.g. `/dyad/kube-bridge`. */
  readonly source: string;
  readonly id?: string;
  readonly time?: Date;
  /** CloudEvents `subject`: what the event is about, e.g. `pod/default/web-0`. */
  readonly subject?: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Validates against the contract and produces headers and body. Throws on invalid payloads. */
export function encodeEvent<C extends MessageContract>(
  contract: C,
  payload: z.input<C['schema']>,
  opts: EncodeOptions,
): EncodedEvent {
  const parsed = contract.schema.safeParse(payload);
  if (!parsed.success) {
    throw new InvalidOutgoingMessageError(contract.type, formatIssues(parsed.error.issues));
  }
  const body = encoder.encode(JSON.stringify(parsed.data));
  if (body.byteLength > MAX_EVENT_BYTES) {
    throw new InvalidOutgoingMessageError(contract.type, [
      `payload is ${body.byteLength} bytes, above the ${MAX_EVENT_BYTES} byte limit`,
    ]);
  }
  const headers: Record<string, string> = {
    [Header.specversion]: CE_SPECVERSION,
    [Header.id]: opts.id ?? crypto.randomUUID(),
    [Header.source]: opts.source,
    [Header.type]: contract.type,
    [Header.time]: (opts.time ?? new Date()).toISOString(),
    [Header.dataschema]: dataSchemaUri(contract.type),
    [Header.datacontenttype]: CONTENT_TYPE_JSON,
    [Header.contentType]: CONTENT_TYPE_JSON,
  };
  if (opts.subject !== undefined) headers[Header.subject] = opts.subject;
  return { headers, body };
}

/** Why an inbound message was refused. Codes are stable: they appear on dead-letter messages. */
export const RejectReason = {
  notCloudEvent: 'not-cloudevent',
  unsupportedSpecVersion: 'unsupported-specversion',
  unknownType: 'unknown-type',
  unexpectedType: 'unexpected-type',
  unsupportedContentType: 'unsupported-content-type',
  oversized: 'oversized',
  invalidJson: 'invalid-json',
  schema: 'schema',
} as const;
export type RejectReason = (typeof RejectReason)[keyof typeof RejectReason];

export type Decoded<T> =
  | {
      readonly ok: true;
      readonly value: T;
      readonly meta: EventMeta;
      readonly contract: MessageContract;
    }
  | {
      readonly ok: false;
      readonly reason: RejectReason;
      readonly detail: string;
      readonly type?: string;
    };

/** Header lookup that tolerates either a plain record or a NATS MsgHdrs-like getter. */
export type HeaderSource =
  ((name: string) => string | undefined) | Readonly<Record<string, string | undefined>>;

function headerGetter(h: HeaderSource | undefined): (name: string) => string | undefined {
  if (h === undefined) return () => undefined;
  if (typeof h === 'function') return h;
  return (name) => h[name];
}

/**
 * Decodes an inbound message against the contracts a consumer accepts. Pure and total: every
 * failure is a value with a stable reason code, so the caller can dead-letter it and go on.
 */
export function decodeEvent<C extends MessageContract>(
  accepted: readonly C[],
  headers: HeaderSource | undefined,
  body: Uint8Array,
  known: ReadonlyMap<string, MessageContract> = new Map(),
): Decoded<PayloadOf<C>> {
  const get = headerGetter(headers);
  const specversion = get(Header.specversion);
  const type = get(Header.type);
  const id = get(Header.id);
  const source = get(Header.source);
  if (specversion === undefined || type === undefined || id === undefined || source === undefined) {
    return fail(
      RejectReason.notCloudEvent,
      'missing one of ce-specversion, ce-type, ce-id, ce-source',
      type,
    );
  }
  if (specversion !== CE_SPECVERSION) {
    return fail(
      RejectReason.unsupportedSpecVersion,
      `ce-specversion ${specversion}, expected ${CE_SPECVERSION}`,
      type,
    );
  }
  const contract = accepted.find((c) => c.type === type);
  if (contract === undefined) {
    return known.has(type)
      ? fail(
          RejectReason.unexpectedType,
          `${type} is not accepted here (accepts ${typesOf(accepted)})`,
          type,
        )
      : fail(
          RejectReason.unknownType,
          `unknown event type ${type} (accepts ${typesOf(accepted)})`,
          type,
        );
  }
  for (const name of [Header.datacontenttype, Header.contentType]) {
    const contentType = get(name);
    if (contentType !== undefined && !contentType.startsWith(CONTENT_TYPE_JSON)) {
      return fail(RejectReason.unsupportedContentType, `${name} ${contentType}`, type);
    }
  }
  if (body.byteLength > MAX_EVENT_BYTES) {
    return fail(
      RejectReason.oversized,
      `payload is ${body.byteLength} bytes, limit ${MAX_EVENT_BYTES}`,
      type,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(decoder.decode(body));
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return fail(
      RejectReason.invalidJson,
      `body is not valid UTF-8 JSON (${body.byteLength} bytes): ${why}`,
      type,
    );
  }
  const parsed = contract.schema.safeParse(json);
  if (!parsed.success) {
    return fail(RejectReason.schema, formatIssues(parsed.error.issues).join('; '), type);
  }
  const subject = get(Header.subject);
  const meta: EventMeta = {
    id,
    source,
    type,
    time: get(Header.time) ?? '',
    ...(subject === undefined ? {} : { subject }),
  };
  return { ok: true, value: parsed.data as PayloadOf<C>, meta, contract };
}

function fail(reason: RejectReason, detail: string, type: string | undefined): Decoded<never> {
  return type === undefined ? { ok: false, reason, detail } : { ok: false, reason, detail, type };
}

function typesOf(cs: readonly MessageContract[]): string {
  return cs.map((c) => c.type).join(', ');
}

/** `spec.ports[0].port: expected number, received string` — a path a person can follow. */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((i) => {
    const path = i.path
      .map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`))
      .join('')
      .replace(/^\./, '');
    return `${path === '' ? '(root)' : path}: ${i.message}`;
  });
}
