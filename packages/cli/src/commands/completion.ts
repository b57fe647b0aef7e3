import { Exit, defineCommand } from '../command.ts';
import type { Command } from '../command.ts';
import { bashCompletion, zshCompletion } from '../completion.ts';

/**
 * `dyad completion bash|zsh`: the script for that shell. Given the whole command tree
 * (built-in and plugin commands) by the dispatcher, since it describes all of them.
 */
export function completionCommand(tree: () => Promise<readonly Command[]>): Command {
  return defineCommand({
    words: ['completion'],
    summary: 'a shell completion script: source <(dyad completion bash)',
    description:
      "bash: source <(dyad completion bash), or save it in /etc/bash_completion.d/dyad. zsh: source <(dyad completion zsh) after compinit, or save it as _dyad in a directory of $fpath. Plugin commands (the lab's) are included when the plugin is installed.",
    flags: {},
    args: { usage: 'bash|zsh', min: 1, max: 1, choices: ['bash', 'zsh'] },
    run: async (ctx) => {
      const commands = await tree();
      ctx.stdout.write(
        ctx.positionals[0] === 'zsh'
          ? zshCompletion(commands, ['help'])
          : bashCompletion(commands, ['help']),
      );
      return Exit.ok;
    },
  });
}
