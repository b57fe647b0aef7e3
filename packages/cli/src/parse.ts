import { parseArgs } from 'node:util';
import type { Command, FlagSpec, FlagSpecs } from './command.ts';

/** Every command takes it; the parser answers it before the command runs. */
export const HELP_FLAG: FlagSpec = {
  type: 'boolean',
  short: 'h',
  description: 'this help',
};

export type Parsed =
  | { readonly kind: 'help' }
  | { readonly kind: 'error'; readonly message: string }
  | {
      readonly kind: 'ok';
      readonly flags: Readonly<Record<string, string | boolean | undefined>>;
      readonly positionals: readonly string[];
      readonly rest: readonly string[];
    };

/** A command's flags with `--help` added: what parseArgs is given and help lists. */
export function allFlags(c: Command): FlagSpecs {
  return { ...c.flags, help: HELP_FLAG };
}

type ParseArgsOptions = Record<string, { type: 'string' | 'boolean'; short?: string }>;

function parseArgsOptions(flags: FlagSpecs): ParseArgsOptions {
  const out: ParseArgsOptions = {};
  for (const [name, f] of Object.entries(flags)) {
    out[name] = f.short === undefined ? { type: f.type } : { type: f.type, short: f.short };
  }
  return out;
}

/** parseArgs' messages are written for programmers; these are for the person at the prompt. */
function message(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  const text = err instanceof Error ? err.message : String(err);
  const quoted = /'([^' ]+)/.exec(text)?.[1] ?? '';
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown flag ${quoted}`;
  if (/argument missing/.test(text)) return `${quoted} needs a value`;
  if (/does not take an argument/.test(text)) return `${quoted} takes no value`;
  if (/ambiguous/.test(text))
    return `${quoted} needs a value (for a value that starts with '-', write ${quoted}=VALUE)`;
  return text.split('\n')[0] ?? text;
}

/**
 * The one strict parser every command goes through (`node:util` parseArgs, strict): unknown
 * flags, missing values and surplus arguments are usage errors. `-h`/`--help` before any `--`
 * asks for help even when other arguments are wrong, as it does in kubectl.
 */
export function parseCommandArgs(c: Command, args: readonly string[]): Parsed {
  const flags = allFlags(c);
  const options = parseArgsOptions(flags);
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      options,
      strict: true,
      allowPositionals: true,
      tokens: true,
    });
  } catch (err) {
    const loose = parseArgs({
      args: [...args],
      options,
      strict: false,
      allowPositionals: true,
      tokens: true,
    });
    const help = loose.tokens.some((t) => t.kind === 'option' && t.name === 'help');
    return help ? { kind: 'help' } : { kind: 'error', message: message(err) };
  }
  if (parsed.values.help === true) return { kind: 'help' };
  const terminator = parsed.tokens.find((t) => t.kind === 'option-terminator');
  const positionals = parsed.tokens
    .filter(
      (t) => t.kind === 'positional' && (terminator === undefined || t.index < terminator.index),
    )
    .map((t) => (t.kind === 'positional' ? t.value : ''));
  const rest = terminator === undefined ? [] : args.slice(terminator.index + 1);
  const spec = c.args ?? { usage: '', min: 0, max: 0 };
  if (terminator !== undefined && spec.rest !== true)
    return { kind: 'error', message: `unexpected '--'` };
  if (spec.rest === true && rest.length === 0)
    return { kind: 'error', message: `a command to run goes after '--'` };
  if (positionals.length > spec.max) {
    const extra = positionals.slice(spec.max).join(' ');
    return {
      kind: 'error',
      message: `unexpected argument${positionals.length - spec.max > 1 ? 's' : ''} ${extra}`,
    };
  }
  if (positionals.length < spec.min) return { kind: 'error', message: `missing ${spec.usage}` };
  const first = positionals[0];
  if (spec.choices !== undefined && first !== undefined && !spec.choices.includes(first))
    return {
      kind: 'error',
      message: `unknown argument ${first}; one of ${spec.choices.join(', ')}`,
    };
  for (const [name, f] of Object.entries(flags)) {
    const v = parsed.values[name];
    if (f.choices !== undefined && typeof v === 'string' && !f.choices.includes(v))
      return {
        kind: 'error',
        message: `--${name} takes ${f.choices.join(', ')}; not '${v}'`,
      };
  }
  return { kind: 'ok', flags: parsed.values, positionals, rest };
}
