import type { Command, CommandContext } from './command.ts';
import { Exit } from './command.ts';
import { COMMANDS } from './registry.ts';

export interface Io {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** Finds the command whose words prefix argv the longest, runs it, returns the exit code. */
export async function run(argv: readonly string[], io: Io, commands: readonly Command[] = COMMANDS): Promise<number> {
  const match = [...commands]
    .sort((a, b) => b.words.length - a.words.length)
    .find((c) => c.words.every((w, i) => argv[i] === w));
  if (match === undefined || argv[0] === 'help' || argv[0] === '--help' || argv[0] === '-h') {
    io.stderr.write(usage(commands));
    return argv.length === 0 || argv[0] === 'help' || argv[0] === '--help' || argv[0] === '-h' ? Exit.ok : Exit.usage;
  }
  const ctx: CommandContext = { args: argv.slice(match.words.length), ...io };
  try {
    return await match.run(ctx);
  } catch (err) {
    io.stderr.write(`dyad ${match.words.join(' ')}: ${err instanceof Error ? err.message : String(err)}\n`);
    return Exit.failed;
  }
}

function usage(commands: readonly Command[]): string {
  const lines = [...commands]
    .sort((a, b) => a.words.join(' ').localeCompare(b.words.join(' ')))
    .map((c) => `  dyad ${c.words.join(' ').padEnd(22)} ${c.summary}`);
  return ['usage: dyad <command> [flags]', '', 'commands:', ...lines, ''].join('\n');
}
