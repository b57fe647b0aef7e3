import type { Bus } from '@dyad/bus';
import type { PayloadOf } from '@dyad/contracts';
import {
  IdentityEvent,
  NODE_DESIRED_STREAM,
  POLICY_STREAM,
  PodIdentityEvent,
  PodPolicyDesiredV2,
  PolicyFilter,
  PolicyStatusEvent,
  nodePolicySubject,
  policyPodSubject,
} from '@dyad/contracts';
import { Exit, defineCommand } from '../command.ts';
import { CliError, UsageError } from '../errors.ts';
import { formatStructured, isStructured, outputFlag, outputFormat } from '../output.ts';
import { identityRows, policyView, renderIdentities, renderPolicy } from './policy-view.ts';

// `dyad policy get` and `dyad identity list`: the policy service's published state, read from
// its streams (DYAD_POLICY, and the node's compiled policy on DYAD_NODE), so both work while the
// policy service is down.

type Identity = PayloadOf<typeof IdentityEvent>;
type PodPolicy = Extract<PayloadOf<typeof PodPolicyDesiredV2>, { op: 'upsert' }>;

const natsFlag = {
  type: 'string',
  value: 'URL',
  description:
    'NATS server URL(s), comma-separated (default $NATS_URL, else nats://127.0.0.1:4222)',
} as const;

const NATS_HELP =
  'NATS as every service reaches it: NATS_URL, NATS_CREDS, NATS_USER/NATS_PASSWORD, NATS_TOKEN. Exit 3 when NATS or the policy stream is not there.';

function noStream(err: unknown): boolean {
  return err instanceof Error && /stream not found/i.test(err.message);
}

async function last<T>(
  bus: Bus,
  contracts: Parameters<Bus['snapshot']>[0],
  stream: string,
  filter: string,
): Promise<T[]> {
  try {
    const got = await bus.snapshot(contracts, { stream, filterSubjects: [filter] });
    return [...got.values()].map((d) => d.value as T);
  } catch (err) {
    if (noStream(err))
      throw new CliError(Exit.unavailable, `no stream ${stream}: is the policy service running?`);
    throw err;
  }
}

const upserts = <T extends { op: string }>(xs: readonly T[]): Extract<T, { op: 'upsert' }>[] =>
  xs.filter((x): x is Extract<T, { op: 'upsert' }> => x.op === 'upsert');

async function withBus<T>(
  env: Readonly<Record<string, string | undefined>>,
  url: string | undefined,
  f: (bus: Bus) => Promise<T>,
): Promise<T> {
  // Loaded here: NATS and telemetry take most of a second to import, which agent commands skip.
  const { connectNats } = await import('./nats.ts');
  const { bus } = await connectNats(env, url);
  try {
    return await f(bus);
  } finally {
    await bus.close();
  }
}

export const identityListCommand = defineCommand({
  words: ['identity', 'list'],
  summary: 'security identities and their labels (wide: their pods), from NATS',
  description: `Reserved identities first, then those the policy service allocated. ${NATS_HELP}`,
  flags: { output: outputFlag(), nats: natsFlag },
  run: async (ctx) => {
    const format = outputFormat(ctx.flags.output);
    const rows = await withBus(ctx.env, ctx.flags.nats, async (bus) => {
      const ids = await last<Identity>(
        bus,
        [IdentityEvent],
        POLICY_STREAM,
        PolicyFilter.identities,
      );
      const pods = await last<PayloadOf<typeof PodIdentityEvent>>(
        bus,
        [PodIdentityEvent],
        POLICY_STREAM,
        PolicyFilter.pods,
      );
      return identityRows(
        ids.filter((i) => i.op === 'upsert'),
        upserts(pods),
      );
    });
    ctx.stdout.write(
      isStructured(format)
        ? formatStructured(format, rows)
        : renderIdentities(rows, format === 'wide'),
    );
    return Exit.ok;
  },
});

export const policyGetCommand = defineCommand({
  words: ['policy', 'get'],
  summary: "a pod's effective NetworkPolicy per direction and family, from NATS",
  description: `The rules the policy service compiled for the pod (what its node's agent installs): peers by identity (both families) and ipBlock prefixes per family, and the problems of the policies that select it. ${NATS_HELP} Exit 1 when the pod has no identity.`,
  flags: { output: outputFlag(), nats: natsFlag },
  args: { usage: '<namespace>/<pod>', min: 1, max: 1 },
  run: async (ctx) => {
    const format = outputFormat(ctx.flags.output);
    const ref = ctx.positionals[0] ?? '';
    const [namespace, name, extra] = ref.split('/');
    if (!namespace || !name || extra !== undefined)
      throw new UsageError(`expected <namespace>/<pod>, got "${ref}"`);
    const view = await withBus(ctx.env, ctx.flags.nats, async (bus) => {
      const [podMsg] = await last<PayloadOf<typeof PodIdentityEvent>>(
        bus,
        [PodIdentityEvent],
        POLICY_STREAM,
        policyPodSubject(namespace, name),
      );
      const pod = podMsg?.op === 'upsert' ? podMsg : undefined;
      if (pod === undefined) return undefined;
      let compiled: PodPolicy | undefined;
      if (pod.node !== undefined) {
        const [msg] = await last<PayloadOf<typeof PodPolicyDesiredV2>>(
          bus,
          [PodPolicyDesiredV2],
          NODE_DESIRED_STREAM,
          nodePolicySubject(pod.node, namespace, name),
        );
        compiled = msg?.op === 'upsert' ? msg : undefined;
      }
      const statuses = upserts(
        await last<PayloadOf<typeof PolicyStatusEvent>>(
          bus,
          [PolicyStatusEvent],
          POLICY_STREAM,
          PolicyFilter.statuses,
        ),
      );
      const ids = (
        await last<Identity>(bus, [IdentityEvent], POLICY_STREAM, PolicyFilter.identities)
      ).filter((i) => i.op === 'upsert');
      return policyView(
        namespace,
        name,
        pod,
        compiled,
        new Map(statuses.map((s) => [`${s.namespace}/${s.name}`, s])),
        ids,
      );
    });
    if (view === undefined) {
      ctx.stderr.write(
        `${namespace}/${name}: no identity (no such pod, host-network, finished, or the policy service has not seen it)\n`,
      );
      return Exit.failed;
    }
    ctx.stdout.write(isStructured(format) ? formatStructured(format, view) : renderPolicy(view));
    return Exit.ok;
  },
});
