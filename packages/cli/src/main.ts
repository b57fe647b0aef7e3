import type { AgentLocation, Command, CommandContext, Io } from './command.ts';
import { Exit } from './command.ts';
import { completionCommand } from './commands/completion.ts';
import { CliError, UsageError } from './errors.ts';
import { commandHelp, groupHelp, rootHelp, synopsis } from './help.ts';
import type { CommandGroup } from './help.ts';
import { parseCommandArgs } from './parse.ts';
import { PLUGIN_PACKAGES, loadPlugins } from './plugins.ts';
import type { Plugin } from './plugins.ts';
import { COMMANDS } from './registry.ts';

export interface RunOptions {
  /** The built-in commands; tests give their own. `completion` is always added. */
  readonly commands?: readonly Command[];
  /** The installed plugins; by default the PLUGIN_PACKAGES that can be imported. */
  readonly plugins?: () => Promise<readonly Plugin[]>;
}

/** The command whose words are the longest prefix of argv. */
function longestMatch(commands: readonly Command[], argv: readonly string[]): Command | undefined {
  return [...commands]
    .sort((a, b) => b.words.length - a.words.length)
    .find((c) => c.words.every((w, i) => argv[i] === w));
}

/** The commands under the longest run of argv's first words that some command starts with. */
function groupOf(
  commands: readonly Command[],
  argv: readonly string[],
): { prefix: string[]; commands: Command[] } | undefined {
  for (let n = argv.length; n > 0; n--) {
    const prefix = argv.slice(0, n);
    const under = commands.filter(
      (c) => c.words.length > n && prefix.every((w, i) => c.words[i] === w),
    );
    if (under.length > 0) return { prefix, commands: under };
  }
  return undefined;
}

class Dispatcher {
  readonly #io: Io;
  readonly #builtins: readonly Command[];
  readonly #loadPlugins: () => Promise<readonly Plugin[]>;
  #plugins: Promise<readonly Plugin[]> | undefined;

  constructor(io: Io, options: RunOptions) {
    this.#io = io;
    this.#loadPlugins =
      options.plugins ?? (() => loadPlugins((m) => io.stderr.write(`dyad: ${m}\n`)));
    this.#builtins = [...(options.commands ?? COMMANDS), completionCommand(() => this.all())];
  }

  /** Loaded once, and only when a command needs them: `dyad status` never imports a plugin. */
  plugins(): Promise<readonly Plugin[]> {
    this.#plugins ??= this.#loadPlugins();
    return this.#plugins;
  }

  /** A plugin's commands, less any whose words a built-in command already has. */
  async pluginGroups(): Promise<CommandGroup[]> {
    const taken = new Set(this.#builtins.map((c) => c.words.join(' ')));
    return (await this.plugins()).map((p) => ({
      title: `Commands from ${p.name}`,
      commands: p.commands.filter((c) => !taken.has(c.words.join(' '))),
    }));
  }

  async all(): Promise<Command[]> {
    return [...this.#builtins, ...(await this.pluginGroups()).flatMap((g) => g.commands)];
  }

  async rootHelp(): Promise<string> {
    const groups = await this.pluginGroups();
    const hint =
      groups.length > 0
        ? `Plugins installed: ${(await this.plugins()).map((p) => p.name).join(', ')}.`
        : `Plugins (${PLUGIN_PACKAGES.join(', ')}) add their commands when installed.`;
    return rootHelp([{ title: 'Commands', commands: this.#builtins }, ...groups], hint);
  }

  async locateAgent(node: string): Promise<AgentLocation | undefined> {
    for (const p of await this.plugins()) {
      const where = await p.locateAgent?.(node, this.#io.env);
      if (where !== undefined) return where;
    }
    return undefined;
  }

  async run(argv: readonly string[]): Promise<number> {
    const io = this.#io;
    const first = argv[0];
    if (first === undefined || first === '--help' || first === '-h') {
      io.stdout.write(await this.rootHelp());
      return Exit.ok;
    }
    if (first === 'help') return this.help(argv.slice(1));
    const command = longestMatch(this.#builtins, argv) ?? longestMatch(await this.all(), argv);
    if (command === undefined) return this.noCommand(argv);
    return this.runCommand(command, argv.slice(command.words.length));
  }

  /** `dyad help [words...]`: the help of that command or group. */
  async help(words: readonly string[]): Promise<number> {
    if (words.length === 0) {
      this.#io.stdout.write(await this.rootHelp());
      return Exit.ok;
    }
    const all = await this.all();
    const exact = all.find((c) => c.words.join(' ') === words.join(' '));
    if (exact !== undefined) {
      this.#io.stdout.write(commandHelp(exact));
      return Exit.ok;
    }
    const group = groupOf(all, words);
    if (group?.prefix.length === words.length) {
      this.#io.stdout.write(groupHelp(group.prefix, group.commands));
      return Exit.ok;
    }
    return this.noCommand(words);
  }

  /** argv names a group (`dyad bpf`), an unknown subcommand or nothing at all: exit 2. */
  async noCommand(argv: readonly string[]): Promise<number> {
    const io = this.#io;
    const all = await this.all();
    const group = groupOf(all, argv);
    if (group !== undefined) {
      const rest = argv.slice(group.prefix.length);
      if (rest.length === 1 && (rest[0] === '--help' || rest[0] === '-h')) {
        io.stdout.write(groupHelp(group.prefix, group.commands));
        return Exit.ok;
      }
      const name = group.prefix.join(' ');
      io.stderr.write(
        `${rest[0] === undefined ? `dyad ${name}: a command is needed` : `dyad ${name}: unknown command "${rest[0]}"`}\n\n${groupHelp(group.prefix, group.commands)}`,
      );
      return Exit.usage;
    }
    const plugins = await this.plugins();
    const hint =
      plugins.length === PLUGIN_PACKAGES.length
        ? ''
        : ` (commands of ${PLUGIN_PACKAGES.filter((p) => !plugins.some((x) => x.name === p)).join(', ')} appear when it is installed)`;
    io.stderr.write(
      `dyad: unknown command "${argv[0] ?? ''}"${hint}\nRun 'dyad --help' for the commands.\n`,
    );
    return Exit.usage;
  }

  async runCommand(command: Command, args: readonly string[]): Promise<number> {
    const io = this.#io;
    const name = `dyad ${command.words.join(' ')}`;
    const usage = (message: string) => {
      io.stderr.write(
        `${name}: ${message}\nUsage: ${synopsis(command)}\nRun '${name} --help' for its flags.\n`,
      );
      return Exit.usage;
    };
    const parsed = parseCommandArgs(command, args);
    if (parsed.kind === 'help') {
      io.stdout.write(commandHelp(command));
      return Exit.ok;
    }
    if (parsed.kind === 'error') return usage(parsed.message);
    const ctx: CommandContext = {
      ...io,
      stdin: io.stdin ?? process.stdin,
      flags: parsed.flags,
      positionals: parsed.positionals,
      rest: parsed.rest,
      locateAgent: (node) => this.locateAgent(node),
    };
    try {
      return await command.run(ctx);
    } catch (err) {
      if (err instanceof UsageError) return usage(err.message);
      if (err instanceof CliError) {
        io.stderr.write(`${name}: ${err.message}\n`);
        return err.exitCode;
      }
      io.stderr.write(`${name}: ${err instanceof Error ? err.message : String(err)}\n`);
      return Exit.failed;
    }
  }
}

/**
 * Runs `dyad` with argv (without the program name) and returns its exit code. Built-in commands
 * first; plugins are imported only for a command that is not built in, for help and completion,
 * and for `--node` (a plugin may know where that node's agent is).
 */
export function run(argv: readonly string[], io: Io, options: RunOptions = {}): Promise<number> {
  return new Dispatcher(io, options).run(argv);
}
