import { ErrorReply } from '@dyad/contracts';

export { ErrorReply };

/** Codes the bus itself uses. Handlers add their own with ReplyError. */
export const ErrorCode = {
  /** The request did not decode (schema, type, size...); the message names the reason. */
  badRequest: 'bad-request',
  /** The handler threw something other than a ReplyError, or its reply broke the reply contract. */
  internal: 'internal',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];
