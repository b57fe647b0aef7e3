import type { Command, FlagSpec } from './command.ts';
import { allFlags } from './parse.ts';

export const EXIT_CODES_TEXT =
  'Exit codes: 0 ok, 1 failed or not ready, 2 usage, 3 agent (or NATS) unreachable.';

/** A command's synopsis line: `dyad bpf ct list [flags]`, `dyad lab exec <ns>/<pod> -- <cmd...>`. */
export function synopsis(c: Command): string {
  const name = `dyad ${c.words.join(' ')}`;
  const args = c.args?.usage;
  if (args === undefined) return `${name} [flags]`;
  // Flags go before `--`: what follows it is the other command's.
  return c.args?.rest === true ? `${name} [flags] ${args}` : `${name} ${args} [flags]`;
}

const WIDTH = 100;

/** Words filled into lines of at most `width` columns. */
export function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') out.push(line);
  return out;
}

function flagLine(name: string, f: FlagSpec): [string, string] {
  const short = f.short === undefined ? '    ' : `-${f.short}, `;
  const value = f.type === 'string' ? ` ${f.value ?? 'VALUE'}` : '';
  return [`${short}--${name}${value}`, f.description];
}

/** Two columns; the second wraps under itself. */
function columns(rows: readonly (readonly [string, string])[], indent = '  '): string[] {
  const width = Math.max(0, ...rows.map(([a]) => a.length));
  const hang = indent.length + width + 3;
  return rows.flatMap(([a, b]) => {
    const [first = '', ...more] = wrap(b, Math.max(40, WIDTH - hang));
    return [
      `${indent}${a.padEnd(width)}   ${first}`.trimEnd(),
      ...more.map((l) => `${' '.repeat(hang)}${l}`),
    ];
  });
}

/** `dyad <command> --help`. */
export function commandHelp(c: Command): string {
  const flags = Object.entries(allFlags(c))
    .filter(([, f]) => f.hidden !== true)
    .map(([name, f]) => flagLine(name, f));
  return [
    `${c.summary.charAt(0).toUpperCase()}${c.summary.slice(1)}.`,
    ...(c.description === undefined ? [] : ['', ...wrap(c.description, WIDTH)]),
    '',
    'Usage:',
    `  ${synopsis(c)}`,
    '',
    'Flags:',
    ...columns(flags),
    '',
    EXIT_CODES_TEXT,
    '',
  ].join('\n');
}

export interface CommandGroup {
  readonly title: string;
  readonly commands: readonly Command[];
}

/** The command list of `dyad --help` and of a group (`dyad bpf --help`). */
export function commandList(groups: readonly CommandGroup[]): string[] {
  const out: string[] = [];
  for (const g of groups) {
    if (g.commands.length === 0) continue;
    const rows = [...g.commands]
      .sort((a, b) => a.words.join(' ').localeCompare(b.words.join(' ')))
      .map((c): [string, string] => [
        `${c.words.join(' ')}${c.args?.choices ? ` ${c.args.choices.join('|')}` : ''}`,
        c.summary,
      ]);
    out.push(`${g.title}:`, ...columns(rows), '');
  }
  return out;
}

/** `dyad`, `dyad --help`, `dyad help`. */
export function rootHelp(groups: readonly CommandGroup[], pluginHint: string): string {
  return [
    "dyad shows what a node's Dyad datapath agent holds (its endpoints and eBPF maps) and the",
    "cluster's IPAM, as kubectl and cilium show theirs.",
    '',
    'Usage:',
    '  dyad <command> [flags]',
    '',
    ...commandList(groups),
    'Flags every command takes:',
    "  -h, --help   the command's help",
    '',
    `Commands that read an agent find it at --agent-socket PATH, else $DYAD_AGENT_SOCKET, else`,
    `/run/dyad/agent.sock; --node NAME means the node named NAME everywhere. ${pluginHint}`,
    EXIT_CODES_TEXT,
    "Run 'dyad <command> --help' for a command's flags.",
    '',
  ].join('\n');
}

/** `dyad bpf` and `dyad bpf --help`: the commands under a word. */
export function groupHelp(prefix: readonly string[], commands: readonly Command[]): string {
  return [
    'Usage:',
    `  dyad ${prefix.join(' ')} <command> [flags]`,
    '',
    ...commandList([{ title: 'Commands', commands }]),
    "Run 'dyad <command> --help' for a command's flags.",
    '',
  ].join('\n');
}
