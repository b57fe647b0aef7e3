import { spawn } from 'node:child_process';
import { CliError, Exit, defineCommand } from '@dyad/cli';
import { labPaths } from './paths.ts';
import { Prober } from './probe.ts';

/** `dyad lab exec ns/pod -- cmd...`: runs cmd in the pod's network namespace; its exit code is ours. */
export const labExecCommand = defineCommand({
  words: ['lab', 'exec'],
  summary: "runs a command in a lab pod's network namespace",
  description:
    "nsenter --net into the pod's namespace (the machine's files stay visible); the command's exit code is passed through, 2 for an unknown pod.",
  flags: {},
  args: { usage: '<ns>/<pod> -- <command...>', min: 1, max: 1, rest: true },
  run: async (ctx) => {
    const [ref = ''] = ctx.positionals;
    const pod = new Prober({ podsDir: labPaths(undefined, ctx.env['DYAD_LAB_DIR']).pods }).pod(ref);
    if ('error' in pod) throw new CliError(Exit.usage, pod.error);
    return new Promise<number>((resolve) => {
      // nsenter --net keeps the mount namespace, so the pod sees the machine's files and bpffs.
      const child = spawn('nsenter', [`--net=/run/netns/${pod.netns}`, ...ctx.rest], {
        stdio: 'inherit',
        env: { ...process.env, ...ctx.env },
      });
      child.on('error', (err) => {
        ctx.stderr.write(`dyad lab exec: ${err.message}\n`);
        resolve(Exit.failed);
      });
      child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    });
  },
});
