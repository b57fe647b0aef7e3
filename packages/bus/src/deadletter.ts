import {
  DeadLetterHeader,
  RejectReason,
  deadLetterSubject,
  isDeadLetterSubject,
} from '@dyad/contracts';
import { headers as natsHeaders } from '@nats-io/transport-node';
import type { MsgHdrs } from '@nats-io/transport-node';
import type { BusContext } from './context.ts';
import { headerValue } from './headers.ts';
import { subjectRoot } from './metrics.ts';

/**
 * Why a message was dead-lettered: a decode refusal from contracts, `handler-failed` when a
 * valid message kept failing its handler (JetStream) or was never acknowledged,
 * `subject-mismatch` when a payload disagreed with its subject (ServeOptions.subjectCheck, or a
 * handler's Refusal), or `outside-node-blocks` when a node's record claims an address outside
 * that node's blocks (a handler's Refusal).
 */
export const DeadLetterReason = {
  ...RejectReason,
  handlerFailed: 'handler-failed',
  subjectMismatch: 'subject-mismatch',
  outsideNodeBlocks: 'outside-node-blocks',
} as const;
export type DeadLetterReason = (typeof DeadLetterReason)[keyof typeof DeadLetterReason];

/**
 * Original `Nats-*` headers are renamed under this prefix on the dead-letter copy: left as they
 * are, `Nats-TTL`, `Nats-Msg-Id` or `Nats-Expected-*` would make the DLQ stream expire, drop or
 * refuse the copy.
 */
export const ORIGINAL_NATS_HEADER_PREFIX = 'dyad-dlq-orig-';

export interface Refused {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers?: MsgHdrs | undefined;
}

export function deadLetterHeaders(
  service: string,
  refused: Refused,
  reason: DeadLetterReason,
  detail: string,
  now: Date = new Date(),
): MsgHdrs {
  const h = natsHeaders();
  if (refused.headers !== undefined) {
    for (const [key, values] of refused.headers) {
      const name = key.toLowerCase().startsWith('nats-')
        ? `${ORIGINAL_NATS_HEADER_PREFIX}${key}`
        : key;
      for (const v of values) h.append(name, v);
    }
  }
  h.set(DeadLetterHeader.reason, reason);
  h.set(DeadLetterHeader.detail, headerValue(detail));
  h.set(DeadLetterHeader.subject, refused.subject);
  h.set(DeadLetterHeader.service, service);
  h.set(DeadLetterHeader.time, now.toISOString());
  return h;
}

/**
 * Sends the refused bytes, unchanged, to `dyad.dlq.v1.<service>` with the reason beside the
 * original headers, counts and logs it. Never throws: a failure to dead-letter is logged, and the
 * caller goes on serving. The flush makes the server hold the copy before a JetStream caller
 * terminates the original.
 */
export async function deadLetter(
  ctx: BusContext,
  refused: Refused,
  reason: DeadLetterReason,
  detail: string,
  extra: Readonly<Record<string, unknown>> = {},
): Promise<void> {
  const root = subjectRoot(refused.subject);
  ctx.metrics.deadLetters.inc({ reason, subject_root: root });
  const fields = {
    ...extra,
    reason,
    detail,
    subject: refused.subject,
    bytes: refused.data.byteLength,
  };
  if (isDeadLetterSubject(refused.subject)) {
    // Re-dead-lettering a dead letter would loop through a wildcard subscriber forever.
    ctx.logger.error(fields, 'refused a dead-letter message; not dead-lettering it again');
    return;
  }
  ctx.logger.warn(fields, 'message dead-lettered');
  try {
    const h = deadLetterHeaders(ctx.service, refused, reason, detail);
    ctx.nc.publish(deadLetterSubject(ctx.service), refused.data, { headers: h });
    await ctx.nc.flush();
  } catch (err) {
    ctx.logger.error({ ...fields, err }, 'could not publish to the dead-letter subject');
  }
}
