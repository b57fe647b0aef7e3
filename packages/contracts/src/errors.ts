/** Errors raised by contract encoding. Decoding never throws: it returns a DecodeFailure. */
export class ContractError extends Error {
  override name = 'ContractError';
}

/** A payload that does not satisfy its own contract was about to be published. */
export class InvalidOutgoingMessageError extends ContractError {
  override name = 'InvalidOutgoingMessageError';
  readonly type: string;
  readonly issues: readonly string[];
  constructor(type: string, issues: readonly string[], options?: { cause?: unknown }) {
    super(`refusing to publish ${type}: ${issues.join('; ')}`, options);
    this.type = type;
    this.issues = issues;
  }
}

/** A NATS subject token would contain characters the encoding cannot carry. */
export class InvalidSubjectTokenError extends ContractError {
  override name = 'InvalidSubjectTokenError';
}
