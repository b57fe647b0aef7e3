import { spawn } from 'node:child_process';
import { Prober, labPaths } from '@dyad/lab';
import type { Command } from '../command.ts';
import { Exit } from '../command.ts';

const USAGE = 'usage: dyad lab exec <namespace>/<pod> -- <command...>\n';

/** `dyad lab exec ns/pod -- cmd...`: runs cmd in the pod's network namespace; its exit code is ours. */
export const labExecCommand: Command = {
  words: ['lab', 'exec'],
  summary: "runs a command in a lab pod's network namespace",
  run: async (ctx) => {
    const [ref, dashes, ...argv] = ctx.args;
    if (ref === undefined || dashes !== '--' || argv.length === 0) {
      ctx.stderr.write(USAGE);
      return Exit.usage;
    }
    const pod = new Prober({ podsDir: labPaths(undefined, ctx.env.DYAD_LAB_DIR).pods }).pod(ref);
    if ('error' in pod) {
      ctx.stderr.write(`dyad lab exec: ${pod.error}\n`);
      return Exit.usage;
    }
    return new Promise<number>((resolve) => {
      // nsenter --net keeps the mount namespace, so the pod sees the machine's files and bpffs.
      const child = spawn('nsenter', [`--net=/run/netns/${pod.netns}`, ...argv], {
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
};
