/** Errors raised by the router service. */
export class RouterError extends Error {
  override name = 'RouterError';
}

/** The router's settings (environment) are invalid. */
export class RouterConfigError extends RouterError {
  override name = 'RouterConfigError';
}

/** Publishing a node's state to JetStream failed; the next reconcile repairs it. */
export class RouterPublishError extends RouterError {
  override name = 'RouterPublishError';
}
