/** Exit codes shared by every command (and documented in the README). */
export const Exit = { ok: 0, failed: 1, usage: 2, unavailable: 3 } as const;
export type Exit = (typeof Exit)[keyof typeof Exit];

/**
 * One flag, as `node:util` parseArgs takes it plus what help and completion show. A string flag
 * takes a value (`--port 80`, `--port=80`, `-o json`, `-ojson`); a boolean flag takes none.
 */
export interface FlagSpec {
  readonly type: 'string' | 'boolean';
  readonly short?: string;
  /** The value's name in help, e.g. `PATH`. */
  readonly value?: string;
  readonly description: string;
  /** The values it takes, when there is a fixed set (help lists them, completion offers them). */
  readonly choices?: readonly string[];
  /** An alias kept for compatibility: accepted, not listed. */
  readonly hidden?: boolean;
}

export type FlagSpecs = Readonly<Record<string, FlagSpec>>;

/** What the parser gives a command: a string for each string flag, true for a boolean one. */
export type FlagValues<F extends FlagSpecs> = {
  readonly [K in keyof F]?: F[K]['type'] extends 'boolean'
    ? boolean
    : F[K]['type'] extends 'string'
      ? string
      : string | boolean;
};

/** Where a command reads and writes, and the environment it sees. */
export interface Io {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Defaults to process.stdin. */
  readonly stdin?: NodeJS.ReadableStream;
}

/** Where an agent of a named node answers, as a plugin that knows nodes (the lab) says. */
export type AgentLocation = { readonly socket: string } | { readonly error: string };

/** What a command gets once its arguments passed the strict parser. */
export interface CommandContext<F extends FlagSpecs = FlagSpecs> extends Io {
  readonly stdin: NodeJS.ReadableStream;
  readonly flags: FlagValues<F>;
  /** Arguments that are not flags, before any `--`. */
  readonly positionals: readonly string[];
  /** Arguments after `--` (only for commands that take them, such as `lab exec`). */
  readonly rest: readonly string[];
  /** The agent socket of `node` per the installed plugins; undefined when none knows it. */
  locateAgent(node: string): Promise<AgentLocation | undefined>;
}

/** The arguments a command takes besides flags, for the parser and for help. */
export interface ArgsSpec {
  /** How help shows them, e.g. `<namespace>/<pod> -- <command...>`. */
  readonly usage: string;
  readonly min: number;
  readonly max: number;
  /** Fixed values of the first argument (completion offers them), e.g. `bash`, `zsh`. */
  readonly choices?: readonly string[];
  /** Arguments after `--` are the command's own (`lab exec`); otherwise `--` is refused. */
  readonly rest?: boolean;
}

/** One `dyad` command, e.g. words ['ipam', 'list']. */
export interface Command<F extends FlagSpecs = FlagSpecs> {
  readonly words: readonly string[];
  /** One line, lower case, for the command list. */
  readonly summary: string;
  /** More for `--help`: what it shows, where from, exit codes that are special. */
  readonly description?: string;
  readonly flags: F;
  readonly args?: ArgsSpec;
  /** Returns the process exit code. Method syntax: a Command<F> is a Command. */
  run(ctx: CommandContext<F>): Promise<number>;
}

/** Keeps a command's flag names and value types exact for its `run`. */
export function defineCommand<const F extends FlagSpecs>(c: Command<F>): Command<F> {
  return c;
}
