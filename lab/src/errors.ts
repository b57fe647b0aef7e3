/** Errors of the lab. */
export class LabError extends Error {
  override name = 'LabError';
}

/** A lab command was given arguments it cannot use. */
export class LabUsageError extends LabError {
  override name = 'LabUsageError';
}

/** No lab is running (no state file, or its supervisor is gone). */
export class LabNotRunningError extends LabError {
  override name = 'LabNotRunningError';
}

/** A system command (ip, nsenter, ...) failed. */
export class LabCommandError extends LabError {
  override name = 'LabCommandError';
}

/** A pod named on the command line is not in the lab. */
export class UnknownPodError extends LabError {
  override name = 'UnknownPodError';
}

/** The Kubernetes API answered with an error. */
export class KubeApiError extends LabError {
  override name = 'KubeApiError';
  readonly status: number;
  constructor(message: string, status: number, options?: { cause?: unknown }) {
    super(message, options);
    this.status = status;
  }
}
