/**
 * A CNI failure with its spec code: becomes the `{cniVersion, code, msg, details}` error result.
 * Codes 1–99 are the spec's; 100+ are Dyad's (see CniCode).
 */
export class CniError extends Error {
  override name = 'CniError';
  readonly code: number;
  readonly details: string;
  constructor(code: number, msg: string, details: string, options?: { cause?: unknown }) {
    super(msg, options);
    this.code = code;
    this.details = details;
  }
}

/** The agent's settings from the environment are wrong. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** A netlink request was refused by the kernel; `errno` is the positive errno. */
export class NetlinkError extends Error {
  override name = 'NetlinkError';
  readonly errno: number;
  readonly op: string;
  constructor(op: string, errno: number, detail: string, options?: { cause?: unknown }) {
    super(`${op}: ${detail}`, options);
    this.errno = errno;
    this.op = op;
  }
}

/** Entering or leaving a network namespace failed. */
export class NetnsError extends Error {
  override name = 'NetnsError';
  readonly errno: number;
  constructor(message: string, errno: number, options?: { cause?: unknown }) {
    super(message, options);
    this.errno = errno;
  }
}

/** The address allocator refused or could not be reached; `code` is IPAM's reply code or a transport one. */
export class AllocatorError extends Error {
  override name = 'AllocatorError';
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** The local state file cannot be read or written. */
export class StateError extends Error {
  override name = 'StateError';
}

/** A node's block list is not one ipam could have sent: `problems` names each fault. */
export class NodeBlocksError extends Error {
  override name = 'NodeBlocksError';
  readonly problems: readonly string[];
  constructor(problems: readonly string[], options?: { cause?: unknown }) {
    super(`node blocks refused: ${problems.join('; ')}`, options);
    this.problems = problems;
  }
}

/**
 * New node blocks would move or drop addresses pods hold; refused, nothing changed. `conflicts`
 * names each container whose addresses the change would take away.
 */
export class BlocksChangeError extends Error {
  override name = 'BlocksChangeError';
  readonly conflicts: readonly { readonly containerId: string; readonly slot: number }[];
  constructor(
    message: string,
    conflicts: readonly { readonly containerId: string; readonly slot: number }[],
  ) {
    super(message);
    this.conflicts = conflicts;
  }
}
