import type { Claim, GlobalEntry } from './claims.ts';
import {
  best,
  bestRoute,
  cidrClaims,
  endpointClaims,
  globalEntry,
  nodeClaims,
  nodeRoutes,
  normalizeNode,
  project,
} from './claims.ts';
import type { IpcacheEntry, NodeInput, NodeState, RouteEntry, World } from './model.ts';

/**
 * Every node's full state computed from the world alone: the reference the incremental core is
 * tested against, and what a reconcile compares the published state with.
 */
export function computeState(world: World): Map<string, NodeState> {
  const nodes = new Map<string, NodeInput>();
  for (const [name, n] of world.nodes) nodes.set(name, normalizeNode(n));

  const claims = new Map<string, Claim[]>();
  const add = ([prefix, claim]: [string, Claim]): void => {
    const list = claims.get(prefix);
    if (list === undefined) claims.set(prefix, [claim]);
    else list.push(claim);
  };
  const routeClaims = new Map<string, RouteEntry[]>();
  for (const [name, n] of nodes) {
    nodeClaims(name, n).forEach(add);
    cidrClaims(name, n).forEach(add);
    for (const r of nodeRoutes(name, n))
      routeClaims.set(r.cidr, [...(routeClaims.get(r.cidr) ?? []), r]);
  }
  // Endpoints of a node that is gone are gone with it.
  for (const [id, ep] of world.endpoints)
    if (nodes.has(ep.node)) endpointClaims(id, ep).forEach(add);

  const global: GlobalEntry[] = [];
  for (const [prefix, list] of claims) {
    const winner = best(list);
    if (winner !== undefined) global.push(globalEntry(prefix, winner, nodes));
  }
  const routes: RouteEntry[] = [];
  for (const list of routeClaims.values()) {
    const r = bestRoute(list);
    if (r !== undefined) routes.push(r);
  }

  const out = new Map<string, NodeState>();
  for (const name of nodes.keys()) {
    const ipcache = new Map<string, IpcacheEntry>();
    for (const g of global) ipcache.set(g.prefix, project(g, name));
    const own = new Map<string, RouteEntry>();
    for (const r of routes) if (r.viaNode !== name) own.set(r.cidr, r);
    out.set(name, { ipcache, routes: own });
  }
  return out;
}
