// The node agent's read-only API (services/datapath-agent/src/api.ts): JSON over HTTP on a unix
// socket. Shared by `dyad status`, `dyad endpoint list` and the `dyad bpf ...` commands.
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { labPaths, readState } from '@dyad/lab';
import type { Command, CommandContext } from '../command.ts';
import { Exit } from '../command.ts';
import { formatTable, outputFormat } from '../table.ts';

export const DEFAULT_AGENT_SOCKET = '/run/dyad/agent.sock';

/** Flags every agent command takes. */
export const AGENT_FLAGS = '[-o json] [--socket PATH | --node NAME]';

export interface AgentArgs {
  readonly format: 'table' | 'json';
  readonly socket: string;
}

/** Thrown by the commands to exit with a code and a one-line message. */
export class AgentCommandError extends Error {
  override name = 'AgentCommandError';
  readonly exitCode: number;
  constructor(exitCode: number, message: string) {
    super(message);
    this.exitCode = exitCode;
  }
}

/**
 * Reads `-o`, `--socket PATH` (else $DYAD_AGENT_SOCKET, else /run/dyad/agent.sock) and
 * `--node NAME` (the agent of that node in the running lab). Anything else is a usage error.
 */
export function agentArgs(ctx: CommandContext, usage: string): AgentArgs {
  const format = outputFormat(ctx.args);
  if (typeof format === 'object')
    throw new AgentCommandError(Exit.usage, `${format.error}\n${usage}`);
  let socket: string | undefined;
  let node: string | undefined;
  for (let i = 0; i < ctx.args.length; i++) {
    const a = ctx.args[i] ?? '';
    const next = () => {
      const v = ctx.args[++i];
      if (v === undefined || v.startsWith('-'))
        throw new AgentCommandError(Exit.usage, `${a} needs a value\n${usage}`);
      return v;
    };
    if (a === '-o' || a === '--output') i++;
    else if (a.startsWith('-o') || a.startsWith('--output=')) continue;
    else if (a === '--socket') socket = next();
    else if (a.startsWith('--socket=')) socket = a.slice('--socket='.length);
    else if (a === '--node') node = next();
    else if (a.startsWith('--node=')) node = a.slice('--node='.length);
    else throw new AgentCommandError(Exit.usage, `unknown argument ${a}\n${usage}`);
  }
  if (socket !== undefined && node !== undefined)
    throw new AgentCommandError(Exit.usage, `--socket and --node exclude each other\n${usage}`);
  if (node !== undefined) {
    const state = readState(labPaths(undefined, ctx.env.DYAD_LAB_DIR).state);
    if (!state) throw new AgentCommandError(Exit.unavailable, `--node ${node}: no lab is running`);
    const n = state.nodes.find((x) => x.name === node);
    if (!n)
      throw new AgentCommandError(
        Exit.usage,
        `--node ${node}: the lab has ${state.nodes.map((x) => x.name).join(', ')}`,
      );
    socket = n.apiSocket;
  }
  return { format, socket: socket ?? ctx.env.DYAD_AGENT_SOCKET ?? DEFAULT_AGENT_SOCKET };
}

/** GET a path of the agent API; AgentCommandError(unavailable) when the agent does not answer. */
export function agentGet(socket: string, path: string, timeoutMs = 10_000): Promise<unknown> {
  if (!existsSync(socket))
    return Promise.reject(
      new AgentCommandError(
        Exit.unavailable,
        `no agent socket at ${socket} (is the datapath agent running? --socket / --node)`,
      ),
    );
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path, method: 'GET', timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = JSON.parse(text) as unknown;
        } catch {
          reject(
            new AgentCommandError(
              Exit.failed,
              `agent answered ${path} with something that is not JSON`,
            ),
          );
          return;
        }
        if (res.statusCode !== 200) {
          const msg =
            isRecord(body) && typeof body.error === 'string'
              ? body.error
              : `HTTP ${res.statusCode}`;
          reject(new AgentCommandError(Exit.failed, `agent: ${msg}`));
          return;
        }
        resolve(body);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', (e) =>
      reject(
        new AgentCommandError(
          Exit.unavailable,
          `cannot reach the agent at ${socket}: ${e.message}`,
        ),
      ),
    );
    req.end();
  });
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The array an API path returns; anything else is a failed command. */
export function records(body: unknown, what: string): Array<Record<string, unknown>> {
  if (!Array.isArray(body))
    throw new AgentCommandError(Exit.failed, `agent answered ${what} with no list`);
  return body.filter(isRecord);
}

/** A cell: '-' for absent, numbers and strings as they are. */
export function cell(v: unknown): string {
  if (v === undefined || v === null || v === '') return '-';
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

export function get(o: unknown, ...path: string[]): unknown {
  let cur = o;
  for (const k of path) {
    if (!isRecord(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}

/** Runs an agent command body, turning AgentCommandError into its message and exit code. */
export async function runAgentCommand(
  ctx: CommandContext,
  name: string,
  body: () => Promise<number>,
): Promise<number> {
  try {
    return await body();
  } catch (e) {
    if (e instanceof AgentCommandError) {
      ctx.stderr.write(`dyad ${name}: ${e.message}\n`);
      return e.exitCode;
    }
    throw e;
  }
}

export function writeJson(ctx: CommandContext, v: unknown): void {
  ctx.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}

/** Names of the set bits of a flags word, '-' when none; a non-number is shown as it is. */
export function flagNames(v: unknown, names: Readonly<Record<number, string>>): string {
  if (typeof v !== 'number') return cell(v);
  const out = Object.entries(names)
    .filter(([bit]) => (v & Number(bit)) !== 0)
    .map(([, name]) => name);
  return out.length ? out.join(',') : '-';
}

export interface MapListSpec {
  /** Command words after `dyad`, e.g. ['bpf', 'ct', 'list']. */
  readonly words: readonly string[];
  readonly summary: string;
  /** Agent API path that returns the map's entries as a JSON array. */
  readonly path: string;
  /** How an error names what was asked for, e.g. `bpf ct`. */
  readonly what: string;
  readonly header: readonly string[];
  /** Entries to table rows, sorted as a person wants to read them. */
  readonly rows: (entries: ReadonlyArray<Record<string, unknown>>) => string[][];
}

/**
 * A `dyad bpf … list` command: reads one map through the agent's API and prints it as an
 * aligned table, or as the API's JSON with `-o json`.
 */
export function mapListCommand(spec: MapListSpec): Command {
  const name = spec.words.join(' ');
  const usage = `usage: dyad ${name} ${AGENT_FLAGS}\n`;
  return {
    words: spec.words,
    summary: spec.summary,
    run: (ctx) =>
      runAgentCommand(ctx, name, async () => {
        const args = agentArgs(ctx, usage);
        const list = records(await agentGet(args.socket, spec.path), spec.what);
        if (args.format === 'json') writeJson(ctx, list);
        else ctx.stdout.write(formatTable(spec.header, spec.rows(list)));
        return Exit.ok;
      }),
  };
}
