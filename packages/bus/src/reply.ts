import { CONTRACTS_BY_TYPE, defineMessage } from '@dyad/contracts';
import type { MessageContract } from '@dyad/contracts';
import { z } from 'zod';

/**
 * The typed error reply of request/reply. A server answers a request it cannot satisfy with this
 * CloudEvent instead of the reply contract, so a requester always gets an answer it can decode
 * and branch on (`code`) rather than a timeout. bus.request turns it into a RemoteError.
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
  subjectPattern: '(the requester reply inbox)',
});

/** Codes the bus itself uses. Handlers add their own with ReplyError. */
export const ErrorCode = {
  /** The request did not decode (schema, type, size...); the message names the reason. */
  badRequest: 'bad-request',
  /** The handler threw something other than a ReplyError, or its reply broke the reply contract. */
  internal: 'internal',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Known types for decoding replies: everything contracts knows, plus the error reply. */
export const KNOWN_WITH_ERROR: ReadonlyMap<string, MessageContract> = new Map([
  ...CONTRACTS_BY_TYPE,
  [ErrorReply.type, ErrorReply],
]);
