import { AGENT_API_SOCKET } from '@dyad/contracts';
import type { AgentApiName } from '@dyad/contracts';
import type { CommandContext, FlagSpecs } from '../command.ts';
import { UsageError } from '../errors.ts';
import { agentGet } from './client.ts';
import type { AgentAnswer } from './client.ts';

/** What `--node NAME` means in every command: the node of that name, and nothing else. */
export const NODE_FLAG_MEANING = 'the node named NAME';

/** Flags of every command that talks to a node's agent. */
export const AGENT_FLAGS = {
  'agent-socket': {
    type: 'string',
    value: 'PATH',
    description: `the agent's API socket (default $DYAD_AGENT_SOCKET, else ${AGENT_API_SOCKET}; --socket is an alias)`,
  },
  socket: { type: 'string', value: 'PATH', description: 'alias of --agent-socket', hidden: true },
  node: {
    type: 'string',
    value: 'NAME',
    description: `${NODE_FLAG_MEANING}: its agent where a plugin knows it (the lab's nodes), else the agent at the socket, which must be NAME's`,
  },
} as const satisfies FlagSpecs;

export type AgentFlags = typeof AGENT_FLAGS;

/** A node's agent, found and (with --node) checked to be that node's. */
export interface AgentClient {
  readonly socket: string;
  get<K extends AgentApiName>(name: K): Promise<AgentAnswer<K>>;
}

/**
 * The socket to talk to: --agent-socket (or --socket), else the socket a plugin knows for
 * --node, else $DYAD_AGENT_SOCKET, else the standard /run/dyad/agent.sock.
 */
export async function agentSocket(ctx: CommandContext<AgentFlags>): Promise<string> {
  const { 'agent-socket': long, socket: alias, node } = ctx.flags;
  if (long !== undefined && alias !== undefined && long !== alias)
    throw new UsageError('--agent-socket and --socket name different sockets');
  const explicit = long ?? alias;
  if (explicit !== undefined) return explicit;
  if (node !== undefined) {
    const where = await ctx.locateAgent(node);
    if (where !== undefined && 'error' in where)
      throw new UsageError(`--node ${node}: ${where.error}`);
    if (where !== undefined) return where.socket;
  }
  const env = ctx.env['DYAD_AGENT_SOCKET'];
  return env !== undefined && env !== '' ? env : AGENT_API_SOCKET;
}

/**
 * The agent to read from. With --node, the agent must say it is that node's (`/v1/version`):
 * on a real node the standard socket is the local agent, and showing another node's data
 * under the name asked for would be worse than an error.
 */
export async function openAgent(ctx: CommandContext<AgentFlags>): Promise<AgentClient> {
  const socket = await agentSocket(ctx);
  const node = ctx.flags.node;
  if (node !== undefined) {
    const v = await agentGet(socket, 'version');
    if (v.body.node !== node)
      throw new UsageError(
        `--node ${node}: the agent at ${socket} is node ${v.body.node}'s (dyad reads the agent of the machine it runs on: run it on ${node}, or give --agent-socket of ${node}'s agent)`,
      );
  }
  return { socket, get: (name) => agentGet(socket, name) };
}
