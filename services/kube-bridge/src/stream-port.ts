import type { MessageContract } from '@dyad/contracts';
import { K8S_STREAM, K8sStream } from '@dyad/contracts';
import type { Bus } from '@dyad/bus';
import type { ObjectEvent, ObjectStreamPort } from './bridge.ts';

/** The bridge's view of JetStream, through the bus. */
export function busStreamPort(bus: Bus, onError: (err: unknown) => void): ObjectStreamPort {
  return {
    onReconnect(listener) {
      return bus.onReconnect(() => {
        bus.ensureStreams([K8sStream]).then(listener, onError);
      });
    },
    async publish(contract, subject, event, opts) {
      await bus.jsPublish(contract, subject, event, {
        msgId: opts.msgId,
        ceSubject: subject,
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
