import type { MessageContract } from '@dyad/contracts';
import { K8S_STREAM, K8sStream, parseK8sObjectSubject } from '@dyad/contracts';
import { retryWithBackoff } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import type { ObjectEvent, ObjectStreamPort } from './bridge.ts';

/** `ce-subject` as every Dyad event spells it: `<kind>/<namespace>/<name>` or `<kind>/<name>`. */
export function ceSubjectOf(natsSubject: string): string {
  const p = parseK8sObjectSubject(natsSubject);
  if (p === undefined) return natsSubject;
  return p.namespace === undefined ? `${p.kind}/${p.name}` : `${p.kind}/${p.namespace}/${p.name}`;
}

/** The bridge's view of JetStream, through the bus. */
export function busStreamPort(bus: Bus, onError: (err: unknown) => void): ObjectStreamPort {
  return {
    onReconnect(listener) {
      // The server may have lost its data: once the bootstrap service has made the stream again
      // (only it may; until then the check is refused), the bridge compares and republishes.
      let off = false;
      const unsubscribe = bus.onReconnect(() => {
        retryWithBackoff(() => bus.ensureStreams([K8sStream]), {
          policy: { initialMs: 250, maxMs: 5000 },
          stopped: () => off,
          onError,
        }).then(() => {
          if (!off) listener();
        }, onError);
      });
      return () => {
        off = true;
        unsubscribe();
      };
    },
    async publish(contract, subject, event, opts) {
      await bus.jsPublish(contract, subject, event, {
        msgId: opts.msgId,
        ceSubject: ceSubjectOf(subject),
        ...(opts.ttlMs === undefined ? {} : { ttl: `${Math.ceil(opts.ttlMs / 1000)}s` }),
      });
    },
    async lastValues(contract: MessageContract, filter: string) {
      const snap = await bus.snapshot([contract], { stream: K8S_STREAM, filterSubjects: [filter] });
      const out = new Map<string, ObjectEvent>();
      for (const [subject, d] of snap) out.set(subject, d.value as ObjectEvent);
      return out;
    },
  };
}
