import type { MessageContract, PayloadOf } from '@dyad/contracts';
import { context } from '@opentelemetry/api';
import { AckPolicy, DeliverPolicy } from '@nats-io/jetstream';
import type { JetStreamClient, JetStreamManager, JsMsg } from '@nats-io/jetstream';
import { nanos, nuid } from '@nats-io/transport-node';
import type { BusContext } from './context.ts';
import { deadLetter } from './deadletter.ts';
import { subjectRoot } from './metrics.ts';
import type { JsDelivery } from './inbound.ts';
import { decodeRaw, delivery } from './inbound.ts';
import { Kind, inSpan, messagingAttributes } from './tracing.ts';

const FETCH_EXPIRES_MS = 2000;

export interface SnapshotOptions {
  readonly stream: string;
  /** Defaults to the whole stream. */
  readonly filterSubjects?: readonly string[];
}

/** What a streamed snapshot read. */
export interface SnapshotRead {
  /** Messages read (one per subject, more for a subject written while it was read). */
  readonly messages: number;
  /** The stream sequence of the last message read (0: none): follow from the next one. */
  readonly lastSeq: number;
}

/**
 * Called with each subject's value as it is read; `undefined` when the stored value does not
 * decode (it was dead-lettered): whatever an earlier call gave for that subject is no longer the
 * current state. A subject written while the snapshot is read may come again, newer.
 */
export type SnapshotEach<T> = (
  subject: string,
  value: JsDelivery<T> | undefined,
) => void | Promise<void>;

/**
 * The last message of every subject matching the filters, decoded: the current state a
 * last-value-per-subject stream holds. Reads until caught up, so values written meanwhile may be
 * included. A stored message that does not decode is dead-lettered and left out, on every
 * snapshot that reads it. Holds every delivery at once: for state that may be cluster-sized,
 * `snapshotEach` applies it as it arrives.
 */
export async function snapshot<C extends MessageContract>(
  ctx: BusContext,
  js: JetStreamClient,
  jsm: JetStreamManager,
  accepted: readonly C[],
  opts: SnapshotOptions,
): Promise<Map<string, JsDelivery<PayloadOf<C>>>> {
  const out = new Map<string, JsDelivery<PayloadOf<C>>>();
  await snapshotEach(ctx, js, jsm, accepted, opts, (subject, d) => {
    if (d === undefined) out.delete(subject);
    else out.set(subject, d);
  });
  return out;
}

/**
 * The same read as `snapshot`, handing each message to `each` as it arrives (awaited, in stream
 * order) instead of collecting them: memory stays one fetch of messages whatever the stream's
 * size.
 */
export async function snapshotEach<C extends MessageContract>(
  ctx: BusContext,
  js: JetStreamClient,
  jsm: JetStreamManager,
  accepted: readonly C[],
  opts: SnapshotOptions,
  each: SnapshotEach<PayloadOf<C>>,
): Promise<SnapshotRead> {
  // The server wants a filter with last-per-subject; '>' is the whole stream.
  const filters = opts.filterSubjects?.length ? [...opts.filterSubjects] : ['>'];
  return inSpan(
    ctx.tracer,
    `snapshot ${opts.stream}`,
    Kind.consumer,
    messagingAttributes(opts.stream, 'receive', { 'messaging.nats.filter_subjects': filters }),
    context.active(),
    async (span) => {
      // An ephemeral, unacknowledged consumer: its creation reply says how much there is to read,
      // so an empty result needs no waiting.
      // Named, so a single filter travels in the create request's subject, where a server
      // permission can confine it (contracts' identities).
      const ci = await jsm.consumers.add(opts.stream, {
        name: nuid.next(),
        ack_policy: AckPolicy.None,
        deliver_policy: DeliverPolicy.LastPerSubject,
        ...(filters.length === 1 ? { filter_subject: filters[0] } : {}),
        ...(filters.length > 1 ? { filter_subjects: filters } : {}),
        inactive_threshold: nanos(30_000),
        mem_storage: true,
      });
      let messages = 0;
      let lastSeq = 0;
      try {
        if (ci.num_pending === 0) return { messages, lastSeq };
        const consumer = await js.consumers.get(opts.stream, ci.name);
        let caughtUp = false;
        while (!caughtUp) {
          const batch = await consumer.fetch({ max_messages: 256, expires: FETCH_EXPIRES_MS });
          let got = 0;
          for await (const m of batch) {
            got++;
            messages++;
            lastSeq = m.info.streamSequence;
            await each(m.subject, await take(ctx, accepted, opts.stream, m));
            if (m.info.pending === 0) {
              caughtUp = true;
              break;
            }
          }
          await batch.close();
          // Nothing came although something was pending: messages may have expired (TTL) or been
          // purged since the consumer was made. Ask the server rather than wait forever.
          if (!caughtUp && got === 0) caughtUp = (await consumer.info()).num_pending === 0;
        }
      } finally {
        await jsm.consumers.delete(opts.stream, ci.name).catch(() => undefined);
      }
      span.setAttribute('messaging.batch.message_count', messages);
      return { messages, lastSeq };
    },
  );
}

async function take<C extends MessageContract>(
  ctx: BusContext,
  accepted: readonly C[],
  stream: string,
  m: JsMsg,
): Promise<JsDelivery<PayloadOf<C>> | undefined> {
  const decoded = decodeRaw(accepted, m);
  if (decoded.ok)
    return {
      ...delivery(m, decoded.value, decoded.meta, decoded.contract),
      stream,
      streamSeq: m.info.streamSequence,
      deliveryCount: m.info.deliveryCount,
      redelivered: m.redelivered,
      pending: m.info.pending,
    };
  ctx.metrics.handled.inc({
    op: 'snapshot',
    outcome: 'dead-letter',
    subject_root: subjectRoot(m.subject),
  });
  await deadLetter(ctx, m, decoded.reason, decoded.detail, {
    type: decoded.type,
    stream,
    seq: m.info.streamSequence,
  });
  return undefined;
}
