import { request } from 'node:http';
import { createInterface } from 'node:readline';
import { AgentMonitor, formatIssues } from '@dyad/contracts';
import { Exit, defineCommand } from '../command.ts';
import { AGENT_FLAGS, openAgent } from '../agent/target.ts';
import { AgentAnswerError, AgentUnreachableError } from '../errors.ts';
import { outputFlag, outputFormat } from '../output.ts';
import { FLOW_FILTER_FLAGS, countFlag, flowFilter } from './flow-flags.ts';
import { flowLine, matchesFlow } from './flow-view.ts';

// `dyad monitor`: one node's flows straight from its agent (`/v1/monitor`), like
// `cilium-dbg monitor`: works while NATS is away, and sees what the agent could not publish.

export const monitorCommand = defineCommand({
  words: ['monitor'],
  summary: "one node's flows as they happen, from its agent, like cilium-dbg monitor",
  description:
    'Streams until interrupted (or --max N flows). Same filters as dyad observe; -o json prints each flow as one JSON object per line. Exit 3 when the agent cannot be reached.',
  flags: { ...AGENT_FLAGS, ...FLOW_FILTER_FLAGS, output: outputFlag(['table', 'json']) },
  run: async (ctx) => {
    const json = outputFormat(ctx.flags.output) === 'json';
    const filter = flowFilter(ctx.flags);
    const max = countFlag('max', ctx.flags.max);
    const agent = await openAgent(ctx);
    await new Promise<void>((resolve, reject) => {
      const req = request(
        { socketPath: agent.socket, path: AgentMonitor.path, method: 'GET' },
        (res) => {
          if (res.statusCode !== 200) {
            res.resume();
            reject(
              new AgentAnswerError(
                AgentMonitor.path,
                `the agent answered ${AgentMonitor.path} with HTTP ${res.statusCode ?? 0}`,
              ),
            );
            return;
          }
          let printed = 0;
          // destroying the request after --max aborts the response: that end is ours
          res.on('error', () => resolve());
          const lines = createInterface({ input: res });
          lines.on('error', () => resolve());
          lines.on('line', (line) => {
            if (max !== undefined && printed >= max) return;
            const checked = AgentMonitor.line.safeParse(JSON.parse(line));
            if (!checked.success) {
              req.destroy();
              reject(
                new AgentAnswerError(
                  AgentMonitor.path,
                  `a flow from the agent does not match the contract this dyad knows: ${formatIssues(checked.error.issues).slice(0, 3).join('; ')}`,
                ),
              );
              return;
            }
            if (!matchesFlow(checked.data, filter)) return;
            ctx.stdout.write(json ? `${line}\n` : `${flowLine(checked.data)}\n`);
            printed++;
            if (max !== undefined && printed >= max) {
              req.destroy();
              resolve();
            }
          });
          res.on('end', resolve);
        },
      );
      req.on('error', (e) => {
        if ((e as NodeJS.ErrnoException).code === 'ECONNRESET' && max !== undefined) return;
        reject(
          new AgentUnreachableError(
            agent.socket,
            `cannot reach the agent at ${agent.socket}: ${e.message}`,
            { cause: e },
          ),
        );
      });
      req.end();
    });
    return Exit.ok;
  },
});
