import { CE_SPECVERSION, CONTENT_TYPE_JSON, Header, dataSchemaUri } from '@dyad/contracts';
import type { MessageContract, PayloadOf } from '@dyad/contracts';
import { headers as natsHeaders } from '@nats-io/transport-node';
import type { BusContext } from './context.ts';
import { subjectRoot } from './metrics.ts';

export interface TelemetryPublisherOptions {
  /**
   * Messages handed to the client whose arrival at the server is not confirmed yet (by a flush
   * round trip). At the limit `publish` refuses: the client's outbound buffer, the one thing that
   * would grow while the server is slow or away, stays under this many messages.
   */
  readonly maxUnconfirmed: number;
  /** A flush round trip starts after this many messages (default maxUnconfirmed / 8). */
  readonly flushEvery?: number;
}

/**
 * The JSON text of a `T`, as `JSON.stringify` writes it. A producer that writes the text of a
 * fixed shape itself (flows) brands it, and its tests compare it with `JSON.stringify` of the
 * object and parse it with the contract's schema; `jsonText` brands `JSON.stringify`'s own.
 */
export type JsonText<T> = string & { readonly __jsonOf: T };

export function jsonText<T>(value: T): JsonText<T> {
  return JSON.stringify(value) as JsonText<T>;
}

export interface TelemetryPublisher<T> {
  /**
   * Sends one event with core NATS; false when it did not (disconnected, or maxUnconfirmed
   * reached, or a `ceSubject` or `time` that is no header value): the caller counts what it
   * dropped. Never throws for the server's state. `time` is the event's `ce-time` (RFC 3339).
   */
  publish(
    subject: string,
    payload: JsonText<T>,
    ceSubject: string | undefined,
    time: string,
  ): boolean;
  /** Whether `publish` would send now: lets a producer skip encoding what would be refused. */
  readonly accepting: boolean;
  /** Messages handed to the client since start. */
  readonly sent: number;
  readonly unconfirmed: number;
}

/**
 * A publisher for high-rate telemetry (flows): core NATS, one CloudEvent per message, bounded.
 * Unlike `publish` it opens no span per message and does not re-validate the payload: the
 * producer builds it from a typed function whose output the contract tests validate, and at tens
 * of thousands of events per second a parse and a span each would cost more than the send.
 */
export function telemetryPublisher<C extends MessageContract>(
  ctx: BusContext,
  contract: C,
  isConnected: () => boolean,
  opts: TelemetryPublisherOptions,
): TelemetryPublisher<PayloadOf<C>> {
  const flushEvery = Math.max(1, opts.flushEvery ?? Math.floor(opts.maxUnconfirmed / 8));
  const idPrefix = `${crypto.randomUUID()}-`;
  const schema = dataSchemaUri(contract.type);
  let sent = 0;
  let unconfirmed = 0;
  let sinceFlush = 0;
  // one family of subjects per contract: the counter's child is bound once
  const published = ctx.metrics.published.labels({
    op: 'publish',
    subject_root: subjectRoot(contract.subjectPattern),
  });
  // The header block is written here, not through MsgHdrs.set: set() canonicalises, searches and
  // validates on every call, which cost more per flow than the rest of the send. nats.js asks the
  // headers object only to encode() itself; this one answers with the text below, which is what
  // MsgHdrs would write for the same headers (the integration test decodes it as a consumer).
  const fixed: ReadonlyArray<readonly [string, string]> = [
    [Header.specversion, CE_SPECVERSION],
    [Header.source, ctx.source],
    [Header.type, contract.type],
    [Header.dataschema, schema],
    [Header.datacontenttype, CONTENT_TYPE_JSON],
    [Header.contentType, CONTENT_TYPE_JSON],
  ];
  for (const [k, v] of fixed)
    if (!isHeaderValue(v)) throw new TypeError(`${k} is no header value: ${JSON.stringify(v)}`);
  const head = `NATS/1.0${fixed.map(([k, v]) => `\r\n${k}: ${v}`).join('')}`;
  let block = '';
  const h = Object.assign(natsHeaders(), { encode: () => Buffer.from(block) });
  const confirm = (n: number) => () => {
    unconfirmed -= n;
  };
  return {
    get sent() {
      return sent;
    },
    get unconfirmed() {
      return unconfirmed;
    },
    get accepting() {
      return unconfirmed < opts.maxUnconfirmed && isConnected();
    },
    publish(subject, payload, ceSubject, time) {
      if (!isConnected() || unconfirmed >= opts.maxUnconfirmed) return false;
      if (!isHeaderValue(time) || (ceSubject !== undefined && !isHeaderValue(ceSubject)))
        return false;
      block =
        `${head}\r\n${Header.id}: ${idPrefix}${sent}\r\n${Header.time}: ${time}` +
        `${ceSubject === undefined ? '' : `\r\n${Header.subject}: ${ceSubject}`}\r\n\r\n`;
      try {
        // Buffer.from: small strings are encoded into a pooled slab, no allocation of their own
        ctx.nc.publish(subject, Buffer.from(payload), { headers: h });
      } catch {
        return false; // closed or draining
      }
      sent++;
      unconfirmed++;
      sinceFlush++;
      published.inc();
      if (sinceFlush >= flushEvery) {
        const n = sinceFlush;
        sinceFlush = 0;
        // a flush that fails (connection lost) also releases: those bytes are gone with it
        ctx.nc.flush().then(confirm(n), confirm(n));
      }
      return true;
    },
  };
}

/** What MsgHdrs would refuse or change in a value: a line break, surrounding white space. */
function isHeaderValue(v: string): boolean {
  return !v.includes('\r') && !v.includes('\n') && v.trim() === v;
}
