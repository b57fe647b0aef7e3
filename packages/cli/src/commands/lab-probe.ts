import { createInterface } from 'node:readline';
import { ProbeSpec, Prober, labPaths } from '@dyad/lab';
import type { ProbeSpecValue } from '@dyad/lab';
import type { Command, CommandContext } from '../command.ts';
import { Exit } from '../command.ts';

const USAGE = [
  'usage: dyad lab probe <ns>/<pod> <ns>/<pod> --port P --protocol TCP|UDP --family IPv4|IPv6 [--timeout-ms T]',
  '       dyad lab probe --batch [--timeout-ms T]   (JSON lines on stdin, one result line per probe on stdout)',
  '',
].join('\n');

interface Flags {
  positional: string[];
  values: Map<string, string>;
  batch: boolean;
}

function parseFlags(args: readonly string[]): Flags | { error: string } {
  const positional: string[] = [];
  const values = new Map<string, string>();
  let batch = false;
  const known = new Set(['--port', '--protocol', '--family', '--timeout-ms']);
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a === '--batch') {
      batch = true;
      continue;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const flag = eq < 0 ? a : a.slice(0, eq);
      if (!known.has(flag)) return { error: `unknown flag ${flag}` };
      const v = eq < 0 ? args[++i] : a.slice(eq + 1);
      if (v === undefined) return { error: `${flag} needs a value` };
      values.set(flag, v);
      continue;
    }
    positional.push(a);
  }
  return { positional, values, batch };
}

/** The lab directory's pod records; DYAD_LAB_DIR points elsewhere than <repo>/.lab. */
function podsDir(ctx: CommandContext): string {
  return labPaths(undefined, ctx.env.DYAD_LAB_DIR).pods;
}

function timeoutOf(values: Map<string, string>): number | { error: string } {
  const t = values.get('--timeout-ms') ?? '1000';
  if (!/^[0-9]+$/.test(t) || Number(t) < 1)
    return { error: '--timeout-ms takes a positive number' };
  return Number(t);
}

async function single(ctx: CommandContext, f: Flags, timeoutMs: number): Promise<number> {
  const [from, to, ...extra] = f.positional;
  if (from === undefined || to === undefined || extra.length > 0) {
    ctx.stderr.write(USAGE);
    return Exit.usage;
  }
  const portText = f.values.get('--port');
  const spec = ProbeSpec.safeParse({
    from,
    to,
    port: portText !== undefined && /^[0-9]+$/.test(portText) ? Number(portText) : portText,
    protocol: f.values.get('--protocol')?.toUpperCase(),
    family: normalizeFamily(f.values.get('--family')),
  });
  if (!spec.success) {
    ctx.stderr.write(
      `dyad lab probe: ${spec.error.issues.map((i) => `${i.path.join('.') || 'args'}: ${i.message}`).join('; ')}\n${USAGE}`,
    );
    return Exit.usage;
  }
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

function normalizeFamily(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  const l = v.toLowerCase();
  return l === 'ipv4' ? 'IPv4' : l === 'ipv6' ? 'IPv6' : v;
}

/**
 * Reads every line first (so the probes start together), runs them all at once, and writes the
 * results in input order as soon as each line's turn comes.
 */
async function batch(
  ctx: CommandContext,
  timeoutMs: number,
  stdin: NodeJS.ReadableStream,
): Promise<number> {
  const lines: string[] = [];
  for await (const line of createInterface({ input: stdin, crlfDelay: Infinity })) {
    if (line.trim() !== '') lines.push(line);
  }
  const prober = new Prober({ podsDir: podsDir(ctx), preload: true });
  let errors = 0;
  try {
    const results = lines.map(async (line) => {
      let raw: unknown;
      try {
        raw = JSON.parse(line);
      } catch {
        return { input: {}, result: 'error' as const, reason: 'not a JSON line' };
      }
      const input = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>) : {};
      const spec = ProbeSpec.safeParse({
        ...input,
        family:
          normalizeFamily(typeof input.family === 'string' ? input.family : undefined) ??
          input.family,
      });
      if (!spec.success) {
        return {
          input,
          result: 'error' as const,
          reason: spec.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
        };
      }
      const spec2: ProbeSpecValue = spec.data;
      const r = await prober.probe(spec2, timeoutMs);
      return { input, result: r.result, ...(r.reason === undefined ? {} : { reason: r.reason }) };
    });
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

export function labProbeCommand(stdin: NodeJS.ReadableStream = process.stdin): Command {
  return {
    words: ['lab', 'probe'],
    summary: 'one connection attempt between lab pods (or --batch: JSON lines in and out)',
    run: async (ctx) => {
      const f = parseFlags(ctx.args);
      if ('error' in f) {
        ctx.stderr.write(`dyad lab probe: ${f.error}\n${USAGE}`);
        return Exit.usage;
      }
      const timeoutMs = timeoutOf(f.values);
      if (typeof timeoutMs !== 'number') {
        ctx.stderr.write(`dyad lab probe: ${timeoutMs.error}\n`);
        return Exit.usage;
      }
      if (f.batch) {
        if (f.positional.length > 0 || [...f.values.keys()].some((k) => k !== '--timeout-ms')) {
          ctx.stderr.write(`dyad lab probe: --batch takes only --timeout-ms\n${USAGE}`);
          return Exit.usage;
        }
        return batch(ctx, timeoutMs, stdin);
      }
      return single(ctx, f, timeoutMs);
    },
  };
}
