import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { AgentApi, AgentApiError, formatIssues } from '@dyad/contracts';
import type { AgentApiBody, AgentApiName } from '@dyad/contracts';
import { AgentAnswerError, AgentUnreachableError } from '../errors.ts';

/** A 200 answer: checked against the contract (`body`) and as the agent sent it (`raw`). */
export interface AgentAnswer<K extends AgentApiName> {
  readonly body: AgentApiBody<K>;
  /** What `-o json|yaml` prints: fields a newer agent added survive. */
  readonly raw: unknown;
}

function getJson(
  socket: string,
  path: string,
  timeoutMs: number,
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path, method: 'GET', timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as unknown });
        } catch {
          reject(
            new AgentAnswerError(
              path,
              `the agent answered ${path} with something that is not JSON`,
            ),
          );
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', (e) =>
      reject(
        new AgentUnreachableError(socket, `cannot reach the agent at ${socket}: ${e.message}`, {
          cause: e,
        }),
      ),
    );
    req.end();
  });
}

/**
 * GET one path of the agent's API and check the answer against its schema in @dyad/contracts.
 * AgentUnreachableError (exit 3) when nothing answers; AgentAnswerError (exit 1) for an error
 * status or a body the contract refuses, naming the fields that differ.
 */
export async function agentGet<K extends AgentApiName>(
  socket: string,
  name: K,
  timeoutMs = 10_000,
): Promise<AgentAnswer<K>> {
  const route = AgentApi[name];
  if (!existsSync(socket))
    throw new AgentUnreachableError(
      socket,
      `no agent socket at ${socket} (is the datapath agent running? --agent-socket PATH, $DYAD_AGENT_SOCKET or --node NAME)`,
    );
  const { status, body } = await getJson(socket, route.path, timeoutMs);
  if (status !== 200) {
    const e = AgentApiError.safeParse(body);
    throw new AgentAnswerError(
      route.path,
      `the agent answered ${route.path} with HTTP ${status}${e.success ? `: ${e.data.error}` : ''}`,
    );
  }
  const checked = route.schema.safeParse(body);
  if (!checked.success) {
    const issues = formatIssues(checked.error.issues);
    throw new AgentAnswerError(
      route.path,
      `the agent's answer to ${route.path} does not match the API contract this dyad knows (agent and CLI of different releases?): ${issues.slice(0, 5).join('; ')}${issues.length > 5 ? `; and ${issues.length - 5} more` : ''}`,
      issues,
    );
  }
  // The route's schema is the one AgentApiBody<K> is inferred from; TypeScript cannot follow
  // the indexed access through safeParse.
  return { body: checked.data as AgentApiBody<K>, raw: body };
}
