/** Errors raised by the policy service; each accepts `{ cause }` as Error does. */
export class PolicyError extends Error {
  override name = 'PolicyError';
}

/** The service's settings (environment) are invalid. */
export class PolicyConfigError extends PolicyError {
  override name = 'PolicyConfigError';
}

/** The identity bucket did not answer or holds something it should not; the caller retries. */
export class IdentityStoreError extends PolicyError {
  override name = 'IdentityStoreError';
}

/** No identity could be allocated: every number is taken, or every attempt lost a race. */
export class IdentityAllocationError extends PolicyError {
  override name = 'IdentityAllocationError';
}
