import type { IpcacheEntry, NodeState, NodeUpdate, RouteEntry } from './model.ts';
import { emptyState, sameIpcacheEntry, sameRoute } from './model.ts';

/**
 * What turns `have` into `want`: used at start-up and on every reconcile, comparing what the
 * stream holds for a node with what the inputs say, so a restarted router publishes only the
 * difference rather than everything.
 */
export function diffState(
  node: string,
  revision: number,
  want: NodeState | undefined,
  have: NodeState,
): NodeUpdate {
  const target = want ?? emptyState();
  const ipcacheUpserts: IpcacheEntry[] = [];
  const ipcacheDeletes: string[] = [];
  const routeUpserts: RouteEntry[] = [];
  const routeDeletes: string[] = [];
  for (const [prefix, e] of target.ipcache) {
    if (!sameIpcacheEntry(have.ipcache.get(prefix), e)) ipcacheUpserts.push(e);
  }
  for (const prefix of have.ipcache.keys())
    if (!target.ipcache.has(prefix)) ipcacheDeletes.push(prefix);
  for (const [cidr, r] of target.routes)
    if (!sameRoute(have.routes.get(cidr), r)) routeUpserts.push(r);
  for (const cidr of have.routes.keys()) if (!target.routes.has(cidr)) routeDeletes.push(cidr);
  return {
    node,
    revision,
    gone: want === undefined,
    ipcacheUpserts,
    ipcacheDeletes,
    routeUpserts,
    routeDeletes,
    ipcacheEntries: target.ipcache.size,
    routes: target.routes.size,
  };
}

export function isEmptyUpdate(u: NodeUpdate): boolean {
  return (
    u.ipcacheUpserts.length +
      u.ipcacheDeletes.length +
      u.routeUpserts.length +
      u.routeDeletes.length ===
    0
  );
}

/** Applies an update to a node's state in place: what an agent does with the messages. */
export function applyUpdate(
  state: { ipcache: Map<string, IpcacheEntry>; routes: Map<string, RouteEntry> },
  u: NodeUpdate,
): void {
  for (const prefix of u.ipcacheDeletes) state.ipcache.delete(prefix);
  for (const cidr of u.routeDeletes) state.routes.delete(cidr);
  for (const e of u.ipcacheUpserts) state.ipcache.set(e.prefix, e);
  for (const r of u.routeUpserts) state.routes.set(r.cidr, r);
}
