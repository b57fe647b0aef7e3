import type { DeadLetterReason } from './deadletter.ts';

/** Base of the errors @dyad/bus raises; each accepts `{ cause }` as Error does. */
export class BusError extends Error {
  override name = 'BusError';
}

/** The first connection to NATS failed. */
export class ConnectError extends BusError {
  override name = 'ConnectError';
}

/** NATS is not connected now (before the first connect, or while reconnecting). */
export class NotConnectedError extends BusError {
  override name = 'NotConnectedError';
}

/** A JetStream publish was not acknowledged (no stream, timeout, expectation failed). */
export class PublishError extends BusError {
  override name = 'PublishError';
  readonly subject: string;
  constructor(subject: string, message: string, options?: { cause?: unknown }) {
    super(`publish to ${subject} failed: ${message}`, options);
    this.subject = subject;
  }
}

/** No reply arrived in time. */
export class RequestTimeoutError extends BusError {
  override name = 'RequestTimeoutError';
  readonly subject: string;
  readonly timeoutMs: number;
  constructor(subject: string, timeoutMs: number, options?: { cause?: unknown }) {
    super(`request to ${subject} timed out after ${timeoutMs} ms`, options);
    this.subject = subject;
    this.timeoutMs = timeoutMs;
  }
}

/** Nobody serves the subject: the server said so at once, so there is no point waiting. */
export class NoRespondersError extends BusError {
  override name = 'NoRespondersError';
  readonly subject: string;
  constructor(subject: string, options?: { cause?: unknown }) {
    super(`no responders for ${subject}`, options);
    this.subject = subject;
  }
}

/** The server answered with a typed error reply (`io.dyad.bus.error.v1`). */
export class RemoteError extends BusError {
  override name = 'RemoteError';
  readonly code: string;
  readonly subject: string;
  constructor(subject: string, code: string, message: string, options?: { cause?: unknown }) {
    super(`${subject}: ${code}: ${message}`, options);
    this.code = code;
    this.subject = subject;
  }
}

/** The reply did not decode against the reply contract; it was dead-lettered. */
export class InvalidReplyError extends BusError {
  override name = 'InvalidReplyError';
  readonly reason: string;
  constructor(subject: string, reason: string, detail: string, options?: { cause?: unknown }) {
    super(`reply from ${subject} refused (${reason}): ${detail}`, options);
    this.reason = reason;
  }
}

/**
 * Thrown by a `serve` handler to answer with a chosen error code instead of `internal`.
 * Codes are short kebab-case words the requester can branch on, e.g. `not-found`.
 */
export class ReplyError extends BusError {
  override name = 'ReplyError';
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** A stream, KV bucket or consumer exists with a config the server will not change in place. */
export class ConfigConflictError extends BusError {
  override name = 'ConfigConflictError';
}

/** dyad-config's jetstream-replicas is missing or not a valid count. */
export class ConfigFileError extends Error {
  override name = 'ConfigFileError';
}

/**
 * Thrown by a handler to refuse a message that decoded but must not be applied (it names a node
 * its subject does not, an address outside its node's blocks): the bus dead-letters it with
 * `reason` at once and does not retry it. The handler must have changed nothing.
 */
export class Refusal extends BusError {
  override name = 'Refusal';
  readonly reason: DeadLetterReason;
  constructor(reason: DeadLetterReason, detail: string) {
    super(detail);
    this.reason = reason;
  }
}
