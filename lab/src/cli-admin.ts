import {
  CliError,
  Exit,
  UsageError,
  defineCommand,
  formatStructured,
  isStructured,
  outputFlag,
  outputFormat,
} from '@dyad/cli';
import type { CommandContext } from '@dyad/cli';
import { formatLabStatus, labDown, labReady, labStatusReport, labUp } from './commands.ts';
import { LabUsageError } from './errors.ts';
import { labPaths } from './paths.ts';
import type { LabPaths } from './paths.ts';

/** This lab's files: DYAD_LAB_DIR as the command sees it, else <repo>/.lab. */
function pathsOf(ctx: CommandContext): LabPaths {
  return labPaths(undefined, ctx.env['DYAD_LAB_DIR']);
}

/** The lab's usage errors are the CLI's (exit 2); anything else fails the command (exit 1). */
async function labCall(body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof LabUsageError) throw new UsageError(err.message, { cause: err });
    throw new CliError(Exit.failed, err instanceof Error ? err.message : String(err), {
      cause: err,
    });
  }
}

/** `dyad lab up`: the same as `npm run lab -- up`. */
export const labUpCommand = defineCommand({
  words: ['lab', 'up'],
  summary: 'starts the local lab (replacing any previous one) and waits until it is ready',
  description: 'Root only. Exit 0 with a summary, or 1 with the failing step and log tails.',
  flags: {
    nodes: { type: 'string', value: 'N', description: 'how many nodes (default 3)' },
    ipv4: { type: 'string', value: 'true|false', description: 'IPv4 everywhere (default true)' },
    ipv6: { type: 'string', value: 'true|false', description: 'IPv6 everywhere (default true)' },
  },
  run: (ctx) =>
    labCall(() => {
      // Handed on in the one spelling the lab's own parser (and `npm run lab -- up`) reads.
      const { nodes, ipv4, ipv6 } = ctx.flags;
      const args = [
        ...(nodes === undefined ? [] : [`--nodes=${nodes}`]),
        ...(ipv4 === undefined ? [] : [`--ipv4=${ipv4}`]),
        ...(ipv6 === undefined ? [] : [`--ipv6=${ipv6}`]),
      ];
      return labUp(args, ctx, pathsOf(ctx));
    }),
});

/** `dyad lab down`: the same as `npm run lab -- down`. */
export const labDownCommand = defineCommand({
  words: ['lab', 'down'],
  summary: 'stops the lab and removes all it made',
  description: 'Processes, namespaces, bpffs pins, sockets, run files; harmless when nothing runs.',
  flags: {},
  run: (ctx) => labCall(() => labDown([], ctx, pathsOf(ctx))),
});

/** `dyad lab status`: the same as `npm run lab -- status`, plus `-o yaml`. */
export const labStatusCommand = defineCommand({
  words: ['lab', 'status'],
  summary: "the lab's processes, nodes and pods; exit 0 when it is ready",
  flags: { output: outputFlag(['table', 'json', 'yaml']) },
  run: (ctx) => {
    const format = outputFormat(ctx.flags.output);
    const paths = pathsOf(ctx);
    const report = labStatusReport(paths);
    ctx.stdout.write(
      isStructured(format)
        ? format === 'json'
          ? `${JSON.stringify(report)}\n`
          : formatStructured(format, report)
        : formatLabStatus(report, paths),
    );
    return Promise.resolve(labReady(report) ? Exit.ok : Exit.failed);
  },
});
