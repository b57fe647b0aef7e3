import { createInterface } from 'node:readline';
import { Exit, UsageError, defineCommand } from '@dyad/cli';
import type { CommandContext } from '@dyad/cli';
import { labPaths } from './paths.ts';
import { ProbeSpec, Prober } from './probe.ts';

const FLAGS = {
  port: {
    type: 'string',
    value: 'P',
    description: 'the port: a number, or the name of a container port of the target pod',
  },
  protocol: {
    type: 'string',
    value: 'PROTO',
    description: 'TCP or UDP (ICMP: echo; the port is ignored)',
  },
  family: {
    type: 'string',
    value: 'FAMILY',
    description: "IPv4 or IPv6: which of the target pod's addresses (optional for an address)",
  },
  'timeout-ms': {
    type: 'string',
    value: 'T',
    description: 'how long one attempt may take (default 1000)',
  },
  batch: {
    type: 'boolean',
    description:
      'JSON lines on stdin ({"from","to","port","protocol","family"}; "to" a pod or an IP), one result line each on stdout',
  },
} as const;

type ProbeContext = CommandContext<typeof FLAGS>;

/** The lab directory's pod records; DYAD_LAB_DIR points elsewhere than <repo>/.lab. */
function podsDir(ctx: ProbeContext): string {
  return labPaths(undefined, ctx.env['DYAD_LAB_DIR']).pods;
}

function timeoutOf(v: string | undefined): number {
  const t = v ?? '1000';
  if (!/^[0-9]+$/.test(t) || Number(t) < 1)
    throw new UsageError('--timeout-ms takes a positive number');
  return Number(t);
}

function normalizeFamily(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  const l = v.toLowerCase();
  return l === 'ipv4' ? 'IPv4' : l === 'ipv6' ? 'IPv6' : v;
}

async function single(ctx: ProbeContext, timeoutMs: number): Promise<number> {
  const [from, to] = ctx.positionals;
  if (from === undefined || to === undefined || ctx.positionals.length !== 2)
    throw new UsageError(
      'a probe goes from one pod to another pod or an address: <ns>/<pod> <ns>/<pod>|<address>',
    );
  const portText = ctx.flags.port;
  const spec = ProbeSpec.safeParse({
    from,
    to,
    port: portText !== undefined && /^[0-9]+$/.test(portText) ? Number(portText) : portText,
    protocol: ctx.flags.protocol?.toUpperCase(),
    family: normalizeFamily(ctx.flags.family),
  });
  if (!spec.success)
    throw new UsageError(
      spec.error.issues.map((i) => `${i.path.join('.') || 'args'}: ${i.message}`).join('; '),
    );
  const prober = new Prober({ podsDir: podsDir(ctx) });
  try {
    const r = await prober.probe(spec.data, timeoutMs);
    if (r.result === 'error') {
      ctx.stderr.write(`dyad lab probe: ${r.reason ?? 'error'}\n`);
      return Exit.usage;
    }
    ctx.stdout.write(`${r.result}\n`);
    return r.result === 'connected' ? Exit.ok : Exit.failed;
  } finally {
    prober.close();
  }
}

interface BatchLine {
  readonly input: Record<string, unknown>;
  readonly result: 'connected' | 'blocked' | 'error';
  readonly reason?: string;
}

/** One input line's answer; never throws, so one bad line cannot stop the others. */
async function probeLine(prober: Prober, line: string, timeoutMs: number): Promise<BatchLine> {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return { input: {}, result: 'error', reason: 'not a JSON line' };
  }
  const input = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>) : {};
  const spec = ProbeSpec.safeParse({
    ...input,
    family:
      normalizeFamily(typeof input.family === 'string' ? input.family : undefined) ?? input.family,
  });
  if (!spec.success)
    return {
      input,
      result: 'error',
      reason: spec.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
    };
  const r = await prober.probe(spec.data, timeoutMs);
  return { input, result: r.result, ...(r.reason === undefined ? {} : { reason: r.reason }) };
}

/**
 * Reads every line first (so the probes start together), runs them all at once, and writes the
 * results in input order as soon as each line's turn comes.
 */
async function batch(ctx: ProbeContext, timeoutMs: number): Promise<number> {
  const lines: string[] = [];
  for await (const line of createInterface({ input: ctx.stdin, crlfDelay: Infinity })) {
    if (line.trim() !== '') lines.push(line);
  }
  const prober = new Prober({ podsDir: podsDir(ctx), preload: true });
  let errors = 0;
  try {
    const results = lines.map((line) => probeLine(prober, line, timeoutMs));
    for (const p of results) {
      const r = await p;
      if (r.result === 'error') errors++;
      const { from, to, port, protocol, family } = r.input;
      ctx.stdout.write(
        JSON.stringify({
          ...r.input,
          from,
          to,
          port,
          protocol,
          family,
          result: r.result,
          ...(r.result === 'error' ? { reason: r.reason } : {}),
        }) + '\n',
      );
    }
  } finally {
    prober.close();
  }
  return errors > 0 ? Exit.usage : Exit.ok;
}

/** `dyad lab probe`: one connection attempt between lab pods, or many with --batch. */
export const labProbeCommand = defineCommand({
  words: ['lab', 'probe'],
  summary: 'one connection attempt from a lab pod to a pod or an address (--batch: JSON lines)',
  description:
    "From the first pod's network namespace to the second pod's address of that family, or to an IP literal of either family (a Service's cluster IP; --family optional, --port a number). Prints connected (exit 0) or blocked (exit 1); exit 2 for an error (unknown pod, no address of that family, bad flags). With --batch: exit 0, or 2 when any line was an error.",
  flags: FLAGS,
  args: {
    usage: '<ns>/<pod> <ns>/<pod>|<address> --port P --protocol TCP|UDP [--family IPv4|IPv6]',
    min: 0,
    max: 2,
  },
  run: async (ctx) => {
    const timeoutMs = timeoutOf(ctx.flags['timeout-ms']);
    if (ctx.flags.batch === true) {
      const { port, protocol, family } = ctx.flags;
      if (ctx.positionals.length > 0 || [port, protocol, family].some((v) => v !== undefined))
        throw new UsageError('--batch takes only --timeout-ms');
      return batch(ctx, timeoutMs);
    }
    return single(ctx, timeoutMs);
  },
});
