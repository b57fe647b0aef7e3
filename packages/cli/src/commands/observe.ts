import { FLOW_STREAM, FlowEvent, flowFilters } from '@dyad/contracts';
import type { FlowEventValue } from '@dyad/contracts';
import { Exit, defineCommand } from '../command.ts';
import { NODE_FLAG_MEANING } from '../agent/target.ts';
import { CliError } from '../errors.ts';
import { outputFlag, outputFormat } from '../output.ts';
import { FLOW_FILTER_FLAGS, countFlag, flowFilter } from './flow-flags.ts';
import { flowLine, matchesFlow } from './flow-view.ts';

// `dyad observe`: flows of the whole cluster from the DYAD_FLOWS stream, like `hubble observe`.
// Namespace, verdict, family and node become NATS filter subjects (the server selects); the pod
// is matched here.

const DEFAULT_LAST = 20;

export const observeCommand = defineCommand({
  words: ['observe'],
  summary: 'flows of the whole cluster from NATS, like hubble observe',
  description: `Without --follow: the last ${DEFAULT_LAST} (or --last N) matching flows the stream DYAD_FLOWS holds (an hour at most), then exit. With --follow: new flows as they happen (after the last N, with --last). -o json prints each flow as one JSON object per line (the flow event as published). NATS as every service reaches it: NATS_URL, NATS_CREDS, NATS_USER/NATS_PASSWORD, NATS_TOKEN. Exit 3 when NATS or the stream is not there.`,
  flags: {
    ...FLOW_FILTER_FLAGS,
    node: {
      type: 'string',
      value: 'NAME',
      description: `${NODE_FLAG_MEANING}: only the flows its agent saw`,
    },
    follow: { type: 'boolean', short: 'f', description: 'keep printing new flows' },
    last: {
      type: 'string',
      value: 'N',
      description: `print the last N stored flows (default ${DEFAULT_LAST} without --follow)`,
    },
    output: outputFlag(['table', 'json']),
    nats: {
      type: 'string',
      value: 'URL',
      description: 'NATS server URL(s), comma-separated (default $NATS_URL)',
    },
  },
  run: async (ctx) => {
    const json = outputFormat(ctx.flags.output) === 'json';
    const filter = flowFilter(ctx.flags);
    const follow = ctx.flags.follow === true;
    const lastFlag = countFlag('last', ctx.flags.last);
    const last = lastFlag ?? (follow ? 0 : DEFAULT_LAST);
    const max = countFlag('max', ctx.flags.max);
    const subjects = flowFilters({
      ...(ctx.flags.node === undefined ? {} : { node: ctx.flags.node }),
      ...(filter.verdict === undefined ? {} : { verdict: filter.verdict }),
      ...(filter.ipVersion === undefined ? {} : { ipVersion: filter.ipVersion }),
      ...(filter.namespace === undefined ? {} : { namespace: filter.namespace }),
    });
    const { connectNats } = await import('./nats.ts');
    const { bus } = await connectNats(ctx.env, ctx.flags.nats);
    let printed = 0;
    let finish = () => {};
    const finished = new Promise<void>((resolve) => (finish = resolve));
    const print = (f: FlowEventValue) => {
      if (max !== undefined && printed >= max) return;
      ctx.stdout.write(json ? `${JSON.stringify(f)}\n` : `${flowLine(f)}\n`);
      printed++;
      if (max !== undefined && printed >= max) finish();
    };
    // history first (kept to the last N), then, with --follow, what comes after it
    const history: FlowEventValue[] = [];
    let caughtUp = last === 0;
    const catchUp = () => {
      caughtUp = true;
      for (const f of history.splice(0)) print(f);
      if (!follow) finish();
    };
    try {
      const consumer = await bus
        .consume(
          [FlowEvent],
          {
            stream: FLOW_STREAM,
            filterSubjects: subjects,
            deliverPolicy: last === 0 ? 'new' : 'all',
            maxMessages: 256,
          },
          (d) => {
            const f = d.value;
            if (matchesFlow(f, filter)) {
              if (caughtUp) print(f);
              else {
                history.push(f);
                if (history.length > last) history.shift();
              }
            }
            if (!caughtUp && d.pending === 0) catchUp();
          },
        )
        .catch((err: unknown) => {
          if (err instanceof Error && /stream not found/i.test(err.message))
            throw new CliError(
              Exit.unavailable,
              `no stream ${FLOW_STREAM}: no agent has published flows yet`,
            );
          throw err;
        });
      if (!caughtUp && consumer.pendingAtStart === 0) catchUp();
      await finished;
      await consumer.stop();
    } finally {
      await bus.close();
    }
    return Exit.ok;
  },
});
