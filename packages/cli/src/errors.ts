import { Exit } from './command.ts';

/** A command failed in a way it reports as one line and an exit code. */
export class CliError extends Error {
  override name = 'CliError';
  readonly exitCode: Exit;
  constructor(exitCode: Exit, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.exitCode = exitCode;
  }
}

/** Bad arguments: exit 2. */
export class UsageError extends CliError {
  override name = 'UsageError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(Exit.usage, message, options);
  }
}

/** No agent answers at the socket: exit 3. */
export class AgentUnreachableError extends CliError {
  override name = 'AgentUnreachableError';
  readonly socket: string;
  constructor(socket: string, message: string, options?: { cause?: unknown }) {
    super(Exit.unavailable, message, options);
    this.socket = socket;
  }
}

/**
 * The agent answered, but not with what the API contract says (an error status, something that
 * is not JSON, or a body its schema refuses): exit 1.
 */
export class AgentAnswerError extends CliError {
  override name = 'AgentAnswerError';
  readonly path: string;
  readonly issues: readonly string[];
  constructor(path: string, message: string, issues: readonly string[] = []) {
    super(Exit.failed, message);
    this.path = path;
    this.issues = issues;
  }
}
