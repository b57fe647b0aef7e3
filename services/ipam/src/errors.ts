/** Errors of @dyad/ipam; each accepts `{ cause }` as Error does. */
export class IpamError extends Error {
  override name = 'IpamError';
}

/** The IPAM configuration is invalid; `problems` name the ConfigMap key of each. */
export class IpamConfigError extends IpamError {
  override name = 'IpamConfigError';
  readonly problems: readonly string[];
  constructor(problems: readonly string[], options?: { cause?: unknown }) {
    super(`invalid IPAM configuration: ${problems.join('; ')}`, options);
    this.problems = problems;
  }
}

/** The configuration disagrees with the state other replicas created, in a way that would lose addresses. */
export class IpamConfigConflictError extends IpamError {
  override name = 'IpamConfigConflictError';
}

/** A settings variable of the process (not an IPAM key) is invalid. */
export class SettingsError extends IpamError {
  override name = 'SettingsError';
}

/** The KV store refused or did not answer. */
export class StoreError extends IpamError {
  override name = 'StoreError';
}
