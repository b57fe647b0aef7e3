import type { Bus } from '@dyad/bus';
import type { PayloadOf } from '@dyad/contracts';
import {
  K8S_STREAM,
  NodeEvent,
  UninstallReply,
  UninstallRequest,
  k8sKindFilter,
  uninstallSubject,
} from '@dyad/contracts';
import { Exit, defineCommand } from '../command.ts';
import { CliError, UsageError } from '../errors.ts';
import { NODE_FLAG_MEANING } from '../agent/target.ts';
import {
  formatStructured,
  formatTable,
  isStructured,
  outputFlag,
  outputFormat,
} from '../output.ts';

export interface NodeOutcome {
  readonly node: string;
  /** `clean`: the agent answered with no problem; `problems`: it answered with some; `no-answer`. */
  readonly result: 'clean' | 'problems' | 'no-answer';
  readonly removed: readonly string[];
  readonly problems: readonly string[];
}

/** The outcome of one node from its agent's answer, or from why there was none. Pure. */
export function outcome(
  node: string,
  reply: PayloadOf<typeof UninstallReply> | { readonly error: string },
): NodeOutcome {
  if ('error' in reply) return { node, result: 'no-answer', removed: [], problems: [reply.error] };
  return {
    node,
    result: reply.problems.length === 0 ? 'clean' : 'problems',
    removed: reply.removed,
    problems: reply.problems,
  };
}

export function renderOutcomes(outcomes: readonly NodeOutcome[]): string {
  return formatTable(
    ['NODE', 'RESULT', 'REMOVED', 'PROBLEMS'],
    outcomes.map((o) => [o.node, o.result, String(o.removed.length), o.problems.join('; ') || '-']),
  );
}

/** The nodes kube-bridge last published (tombstones left out): every node runs an agent. */
async function clusterNodes(bus: Bus): Promise<string[]> {
  const got = await bus.snapshot([NodeEvent], {
    stream: K8S_STREAM,
    filterSubjects: [k8sKindFilter('Node')],
  });
  return [...got.values()]
    .map((d) => d.value)
    .filter((v) => v.op === 'upsert')
    .map((v) => v.object.metadata.name)
    .sort();
}

/**
 * Asks one node's agent until it answers or the deadline passes: an agent that is restarting or
 * reconnecting has no subscription for a moment (no responders), so it is asked again.
 */
async function askNode(
  bus: Bus,
  node: string,
  deadline: number,
  answered: (err: unknown) => boolean,
): Promise<NodeOutcome> {
  let last = 'no agent answered';
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) return outcome(node, { error: `${last} within the time allowed` });
    try {
      const reply = await bus.request(
        UninstallRequest,
        uninstallSubject(node),
        { node },
        UninstallReply,
        { timeoutMs: Math.max(1000, Math.min(left, 60_000)) },
      );
      return outcome(node, reply);
    } catch (err) {
      // the agent answered with an error: asking again would get the same
      if (answered(err)) return outcome(node, { error: err instanceof Error ? err.message : '' });
      last = err instanceof Error ? err.message : String(err);
      // a retry pace, not a synchronisation: the agent has no subscription right now
      await new Promise((r) => setTimeout(r, Math.min(1000, Math.max(0, left - 1))));
    }
  }
}

/** `dyad uninstall`: every node's agent takes Dyad off its node (helm's pre-delete hook). */
export const uninstallCommand = defineCommand({
  words: ['uninstall'],
  summary: "removes Dyad from every node (the chart's pre-delete hook runs it before helm deletes)",
  description:
    "Asks each node's agent over NATS to remove the conflist (first: no new pod gets Dyad), the datapath's tc programs, the pods' devices (pods still running lose their network), the node routes, the pins, dyad-cni and its directories, and waits for every answer. The nodes are those kube-bridge last published, or --node. NATS as every service reaches it (NATS_URL, NATS_CREDS, NATS_TOKEN, ...). Exit 0 when every node answered clean, 1 when one answered with problems or did not answer in --timeout-s, 3 when NATS is not there.",
  flags: {
    output: outputFlag(),
    nats: {
      type: 'string',
      value: 'URL',
      description:
        'NATS server URL(s), comma-separated (default $NATS_URL, else nats://127.0.0.1:4222)',
    },
    node: {
      type: 'string',
      value: 'NAME',
      description: `${NODE_FLAG_MEANING}: only its agent (default: every node kube-bridge published)`,
    },
    'timeout-s': {
      type: 'string',
      value: 'SECONDS',
      description: 'how long to wait for the agents in all (default 120)',
    },
  },
  run: async (ctx) => {
    const format = outputFormat(ctx.flags.output);
    const timeoutS = Number(ctx.flags['timeout-s'] ?? '120');
    if (!Number.isFinite(timeoutS) || timeoutS <= 0)
      throw new UsageError(`--timeout-s takes a positive number, not ${ctx.flags['timeout-s']}`);
    const deadline = Date.now() + timeoutS * 1000;
    // loaded here, not at the top: see ipam-list.ts
    const { connectNats } = await import('./nats.ts');
    const { RemoteError } = await import('@dyad/bus');
    const { bus, where } = await connectNats(ctx.env, ctx.flags.nats);
    try {
      let nodes: string[];
      if (ctx.flags.node !== undefined) nodes = [ctx.flags.node];
      else {
        try {
          nodes = await clusterNodes(bus);
        } catch (err) {
          throw new CliError(
            Exit.unavailable,
            `cannot read the nodes from ${K8S_STREAM} on ${where}: ${err instanceof Error ? err.message : String(err)}`,
            { cause: err },
          );
        }
      }
      const outcomes = await Promise.all(
        nodes.map((n) => askNode(bus, n, deadline, (e) => e instanceof RemoteError)),
      );
      ctx.stdout.write(
        isStructured(format) ? formatStructured(format, outcomes) : renderOutcomes(outcomes),
      );
      return outcomes.every((o) => o.result === 'clean') ? Exit.ok : Exit.failed;
    } finally {
      await bus.close();
    }
  },
});
