import type { Bus, BusConsumer, JsDelivery } from '@dyad/bus';
import { IdentityEvent, POLICY_STREAM, PolicyFilter } from '@dyad/contracts';
import type { PayloadOf } from '@dyad/contracts';
import type { FlowDirectory } from './directory.ts';

type Identity = PayloadOf<typeof IdentityEvent>;

/**
 * Identities and their labels from the policy service (stream DYAD_POLICY, last value per
 * identity) into the flow directory: a snapshot, then the changes after it.
 */
export async function followIdentities(bus: Bus, dir: FlowDirectory): Promise<BusConsumer> {
  let snap: Map<string, JsDelivery<Identity>>;
  try {
    snap = await bus.snapshot([IdentityEvent], {
      stream: POLICY_STREAM,
      filterSubjects: [PolicyFilter.identities],
    });
  } catch (e) {
    // no policy service yet: its stream appears with its first identity
    if (!(e instanceof Error && /stream not found/i.test(e.message))) throw e;
    snap = new Map();
  }
  let last = 0;
  const entries: Array<[number, readonly string[]]> = [];
  for (const d of snap.values()) {
    last = Math.max(last, d.streamSeq);
    if (d.value.op === 'upsert') entries.push([d.value.identity, d.value.labels]);
  }
  dir.replaceLabels(entries);
  return bus.consume(
    [IdentityEvent],
    {
      stream: POLICY_STREAM,
      filterSubjects: [PolicyFilter.identities],
      ...(last > 0 ? { startSeq: last + 1 } : { deliverPolicy: 'all' as const }),
    },
    (d) => dir.setLabels(d.value.identity, d.value.op === 'upsert' ? d.value.labels : undefined),
  );
}
