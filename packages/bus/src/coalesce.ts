import type { NatsConnection } from '@nats-io/transport-node';

/**
 * The one member of nats.js's protocol handler this module touches (private in its types). The
 * client is pinned to its exact version in this package's package.json, and
 * test/coalesce.int.test.ts checks that the patch takes hold on it: a client upgrade is a
 * deliberate change that runs that test.
 */
interface FlushingProtocol {
  flushPending(): void;
}

function protocolOf(nc: NatsConnection): FlushingProtocol | undefined {
  const p = (nc as unknown as { protocol?: unknown }).protocol;
  if (typeof p !== 'object' || p === null) return undefined;
  const f = (p as { flushPending?: unknown }).flushPending;
  return typeof f === 'function' ? (p as FlushingProtocol) : undefined;
}

export interface CoalescedWrites {
  /** Writes what is buffered now; for close(), which (in nats.js) does not flush. */
  flushNow(): void;
}

/**
 * nats.js writes its outbound buffer to the socket in a microtask queued by the first message
 * after a write, so a service whose handlers each await a reply writes one message per syscall.
 * This defers that write to the end of the event-loop turn, so every message produced in one turn
 * leaves in one write. Nothing is reordered or dropped: the same buffer is written, later. Returns
 * undefined, and changes nothing, if the client's internals are not what this expects.
 */
export function coalesceWrites(nc: NatsConnection): CoalescedWrites | undefined {
  const proto = protocolOf(nc);
  if (proto === undefined) return undefined;
  const write = proto.flushPending.bind(proto);
  let scheduled: NodeJS.Immediate | undefined;
  proto.flushPending = () => {
    scheduled ??= setImmediate(() => {
      scheduled = undefined;
      write();
    });
  };
  return {
    flushNow: () => {
      if (scheduled !== undefined) clearImmediate(scheduled);
      scheduled = undefined;
      write();
    },
  };
}
