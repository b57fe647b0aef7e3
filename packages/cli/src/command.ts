/** What a command gets: its arguments after the command words, and where to write. */
export interface CommandContext {
  readonly args: readonly string[];
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** One `dyad` command, e.g. words ['ipam', 'list']. Returns the process exit code. */
export interface Command {
  readonly words: readonly string[];
  readonly summary: string;
  readonly run: (ctx: CommandContext) => Promise<number>;
}

/** Exit codes shared by every command. */
export const Exit = { ok: 0, failed: 1, usage: 2, unavailable: 3 } as const;
export type Exit = (typeof Exit)[keyof typeof Exit];
