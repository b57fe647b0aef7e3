// Every error names the part that failed so a red test says which binary to look at.

export class ToolMissingError extends Error {
  override name = 'ToolMissingError';
  readonly tool: string;
  readonly path: string;

  constructor(tool: string, path: string, options?: { cause?: unknown }) {
    super(
      `${tool} not found at ${path}: run \`npm run tools\` (bash tools/build.sh) to build the pinned binaries`,
      options,
    );
    this.tool = tool;
    this.path = path;
  }
}

export class StartupError extends Error {
  override name = 'StartupError';
  readonly binary: string;
  readonly logPath: string;
  readonly logTail: string;

  constructor(
    binary: string,
    reason: string,
    logPath: string,
    logTail: string,
    options?: { cause?: unknown },
  ) {
    const lines = logTail.split('\n').length;
    super(
      `${binary} failed to start: ${reason}\n--- last ${lines} log lines of ${binary} (${logPath}) ---\n${logTail}`,
      options,
    );
    this.binary = binary;
    this.logPath = logPath;
    this.logTail = logTail;
  }
}

export class CommandError extends Error {
  override name = 'CommandError';
  readonly command: string;
  readonly output: string;

  constructor(command: string, output: string, options?: { cause?: unknown }) {
    super(`${command} failed: ${output}`, options);
    this.command = command;
    this.output = output;
  }
}
