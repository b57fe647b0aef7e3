import type { AgentVersionValue } from '@dyad/contracts';
import pkg from '../../package.json' with { type: 'json' };
import { Exit, defineCommand } from '../command.ts';
import { AGENT_FLAGS, openAgent } from '../agent/target.ts';
import { CliError } from '../errors.ts';
import { formatStructured, isStructured, outputFlag, outputFormat } from '../output.ts';

/** This CLI's release: the version in its package.json. */
export const CLIENT_VERSION: string = pkg.version;

export interface VersionReport {
  readonly client: { readonly version: string; readonly runtime: string };
  readonly agent?: AgentVersionValue;
  /** Why there is no agent version (only when one was asked for). */
  readonly agentError?: string;
}

function formatVersion(r: VersionReport): string {
  const lines = [`Client:  dyad ${r.client.version} (node ${r.client.runtime})`];
  if (r.agent !== undefined)
    lines.push(
      `Agent:   ${r.agent.version} on node ${r.agent.node}, API ${r.agent.api} (node ${r.agent.runtime})`,
    );
  else if (r.agentError !== undefined) lines.push(`Agent:   unknown (${r.agentError})`);
  return `${lines.join('\n')}\n`;
}

/** `dyad version`: the client's release and, when its agent answers, the agent's. */
export const versionCommand = defineCommand({
  words: ['version'],
  summary: "this dyad's version and, when it answers, the node agent's",
  description:
    'Exit 0 when the agent answered (or with --client), 3 when no agent answers: the client version is printed either way.',
  flags: {
    client: { type: 'boolean', description: 'only the client version; no agent is asked' },
    output: outputFlag(['table', 'json', 'yaml']),
    ...AGENT_FLAGS,
  },
  run: async (ctx) => {
    const format = outputFormat(ctx.flags.output);
    const client = { version: CLIENT_VERSION, runtime: process.version };
    let report: VersionReport = { client };
    let code: number = Exit.ok;
    if (ctx.flags.client !== true) {
      try {
        report = { client, agent: (await (await openAgent(ctx)).get('version')).body };
      } catch (err) {
        if (!(err instanceof CliError)) throw err;
        report = { client, agentError: err.message };
        code = err.exitCode;
      }
    }
    ctx.stdout.write(
      isStructured(format) ? formatStructured(format, report) : formatVersion(report),
    );
    return code;
  },
});
