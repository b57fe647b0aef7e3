import {
  ROUTER_STREAM,
  RouterIpcacheEvent,
  RouterRouteEvent,
  RouterServiceEvent,
  RouterSyncEvent,
} from '@dyad/contracts';
import type { Bus } from '@dyad/bus';
import type { RouterStreamPort } from './sink.ts';
import { storedFromMessages } from './sink.ts';

/** The router's output stream through the bus. */
export function busRouterPort(bus: Bus): RouterStreamPort {
  const opts = (ttl: string | undefined) => (ttl === undefined ? {} : { ttl });
  return {
    async publishIpcache(subject, payload, ttl) {
      await bus.jsPublish(RouterIpcacheEvent, subject, payload, opts(ttl));
    },
    async publishRoute(subject, payload, ttl) {
      await bus.jsPublish(RouterRouteEvent, subject, payload, opts(ttl));
    },
    async publishSync(subject, payload, ttl) {
      await bus.jsPublish(RouterSyncEvent, subject, payload, opts(ttl));
    },
    async publishService(subject, payload, ttl) {
      await bus.jsPublish(RouterServiceEvent, subject, payload, opts(ttl));
    },
    async readAll() {
      const snap = await bus.snapshot(
        [RouterIpcacheEvent, RouterRouteEvent, RouterSyncEvent, RouterServiceEvent],
        { stream: ROUTER_STREAM },
      );
      return storedFromMessages([...snap.values()].map((d) => d.value));
    },
  };
}
