import { z } from 'zod';
import { defineMessage } from './contract.ts';

/** The subject pattern of a reply: the requester's own inbox, which the request carries. */
export const REPLY_INBOX = '(the requester reply inbox)';

/**
 * The typed error reply of request/reply. A server answers a request it cannot satisfy with this
 * CloudEvent instead of the reply contract, so a requester always gets an answer it can decode
 * and branch on (`code`) rather than a timeout. @dyad/bus's request turns it into a RemoteError.
 */
export const ErrorReply = defineMessage({
  type: 'io.dyad.bus.error.v1',
  version: 1,
  schema: z.object({
    error: z.object({
      /** Kebab-case, stable: `bad-request`, `internal`, or a code the handler chose via ReplyError. */
      code: z.string().regex(/^[a-z][a-z0-9-]*$/),
      message: z.string(),
    }),
  }),
  description: 'An error answer to a request: the request was refused or its handler failed.',
  subjectPattern: REPLY_INBOX,
});
