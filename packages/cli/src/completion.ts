import type { Command } from './command.ts';
import { allFlags } from './parse.ts';

/**
 * Shell completion scripts, generated from the command tree (so they cannot drift from it):
 * command words, each command's flags, the values of flags with a fixed set (`-o json`), files
 * for PATH flags, and fixed first arguments (`completion bash`). Plugin commands are in the
 * tree when the plugin is installed at generation time.
 */

interface Node {
  /** Words that may follow this path. */
  readonly next: string[];
  /** Flags of the command at this path, if it is one. */
  readonly flags: string[];
  /** Fixed first arguments of that command. */
  readonly args: string[];
}

/** Every command-word path ('' for the root) and what may follow it. */
function tree(commands: readonly Command[], extra: readonly string[]): Map<string, Node> {
  const nodes = new Map<string, Node>();
  const node = (path: string) => {
    let n = nodes.get(path);
    if (n === undefined) {
      n = { next: [], flags: [], args: [] };
      nodes.set(path, n);
    }
    return n;
  };
  node('').next.push(...extra);
  for (const c of commands) {
    c.words.forEach((w, i) => {
      const n = node(c.words.slice(0, i).join(' '));
      if (!n.next.includes(w)) n.next.push(w);
    });
    const leaf = node(c.words.join(' '));
    for (const [name, f] of Object.entries(allFlags(c))) {
      if (f.hidden === true) continue;
      leaf.flags.push(`--${name}`);
      if (f.short !== undefined) leaf.flags.push(`-${f.short}`);
    }
    leaf.args.push(...(c.args?.choices ?? []));
  }
  return nodes;
}

/** Flags that take a value, and the values of those with a fixed set (per flag spelling). */
function valueFlags(commands: readonly Command[]): {
  takes: string[];
  choices: Map<string, Set<string>>;
  files: string[];
} {
  const takes = new Set<string>();
  const choices = new Map<string, Set<string>>();
  const files = new Set<string>();
  for (const c of commands) {
    for (const [name, f] of Object.entries(allFlags(c))) {
      if (f.type !== 'string') continue;
      const spellings = [`--${name}`, ...(f.short === undefined ? [] : [`-${f.short}`])];
      for (const s of spellings) {
        takes.add(s);
        if (f.choices !== undefined) {
          const set = choices.get(s) ?? new Set<string>();
          f.choices.forEach((v) => set.add(v));
          choices.set(s, set);
        }
        if (f.value === 'PATH' || f.value === 'FILE') files.add(s);
      }
    }
  }
  return { takes: [...takes].sort(), choices, files: [...files].sort() };
}

const words = (xs: readonly string[]) => [...xs].sort().join(' ');

/** The `case` arms that set the candidates for a command path. */
function arms(nodes: Map<string, Node>, indent: string, open: string, close: string): string[] {
  return [...nodes.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(
      ([path, n]) =>
        `${indent}${open}"${path}"${close} cmds="${words([...n.next, ...n.args])}"; flags="${words(n.flags)}" ;;`,
    );
}

function valueArms(
  commands: readonly Command[],
  indent: string,
  open: string,
  close: string,
  files: string,
  choices: (vs: string) => string,
): string[] {
  const v = valueFlags(commands);
  const out: string[] = [];
  for (const [flag, set] of [...v.choices.entries()].sort(([a], [b]) => a.localeCompare(b)))
    out.push(`${indent}${open}${flag}${close} ${choices(words([...set]))}; return ;;`);
  if (v.files.length > 0)
    out.push(`${indent}${open}${v.files.join('|')}${close} ${files}; return ;;`);
  return out;
}

/** `source <(dyad completion bash)`, or put it in /etc/bash_completion.d/dyad. */
export function bashCompletion(commands: readonly Command[], extra: readonly string[]): string {
  const v = valueFlags(commands);
  return [
    '# bash completion for dyad: source <(dyad completion bash)',
    '_dyad() {',
    '  local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
    '  local cmdpath="" w i cmds="" flags=""',
    '  case "$prev" in',
    ...valueArms(
      commands,
      '    ',
      '',
      ')',
      'COMPREPLY=($(compgen -f -- "$cur"))',
      (vs) => `COMPREPLY=($(compgen -W "${vs}" -- "$cur"))`,
    ),
    '  esac',
    '  # The command words typed so far: everything before the cursor that is not a flag or a value.',
    '  for ((i = 1; i < COMP_CWORD; i++)); do',
    '    w="${COMP_WORDS[i]}"',
    '    case "$w" in',
    `      ${v.takes.join('|')}) ((i++)); continue ;;`,
    '      -*) continue ;;',
    '    esac',
    '    cmdpath="${cmdpath:+$cmdpath }$w"',
    '  done',
    '  case "$cmdpath" in',
    ...arms(tree(commands, extra), '    ', '', ')'),
    '  esac',
    '  if [[ "$cur" == -* ]]; then',
    '    COMPREPLY=($(compgen -W "$flags" -- "$cur"))',
    '  else',
    '    COMPREPLY=($(compgen -W "$cmds" -- "$cur"))',
    '  fi',
    '}',
    'complete -o default -F _dyad dyad',
    '',
  ].join('\n');
}

/** `source <(dyad completion zsh)` after compinit, or save as `_dyad` in a directory of $fpath. */
export function zshCompletion(commands: readonly Command[], extra: readonly string[]): string {
  const v = valueFlags(commands);
  return [
    '#compdef dyad',
    '# zsh completion for dyad: source <(dyad completion zsh), or save as _dyad in your $fpath',
    '_dyad() {',
    // $path is zsh's mirror of $PATH: this function must never assign it.
    '  local cur="${words[CURRENT]}" prev="${words[CURRENT-1]}"',
    '  local cmdpath="" w i cmds="" flags=""',
    '  case "$prev" in',
    ...valueArms(commands, '    ', '(', ')', '_files', (vs) => `compadd -- ${vs}`),
    '  esac',
    '  for ((i = 2; i < CURRENT; i++)); do',
    '    w="${words[i]}"',
    '    case "$w" in',
    `      (${v.takes.join('|')}) ((i++)); continue ;;`,
    '      (-*) continue ;;',
    '    esac',
    '    cmdpath="${cmdpath:+$cmdpath }$w"',
    '  done',
    '  case "$cmdpath" in',
    ...arms(tree(commands, extra), '    ', '(', ')'),
    '  esac',
    '  if [[ "$cur" == -* ]]; then',
    '    compadd -- ${=flags}',
    '  else',
    '    compadd -- ${=cmds}',
    '  fi',
    '}',
    'if [[ "${funcstack[1]}" == _dyad ]]; then _dyad "$@"; else compdef _dyad dyad; fi',
    '',
  ].join('\n');
}
