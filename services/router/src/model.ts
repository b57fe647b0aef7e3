import type { Family } from '@dyad/netaddr';
import type { RouterIpcacheEntryValue, RouterRouteEntryValue } from '@dyad/contracts';

/**
 * A node as the router knows it: pod CIDRs from IPAM (every block of every set the node holds, of
 * either family), addresses from the Node object.
 */
export interface NodeInput {
  readonly podCidrs: readonly string[];
  readonly addresses: Partial<Record<Family, string>>;
}

/** A pod endpoint as its agent reported it. */
export interface EndpointInput {
  readonly node: string;
  readonly identity: number;
  readonly ips: readonly string[];
  /**
   * When the endpoint came to be (epoch ms). If two endpoints claim one address (an old pod's
   * removal not seen yet), the newer one wins.
   */
  readonly since: number;
  readonly pod?: { readonly namespace: string; readonly name: string };
}

/** Everything the router's output depends on. */
export interface World {
  readonly nodes: ReadonlyMap<string, NodeInput>;
  readonly endpoints: ReadonlyMap<string, EndpointInput>;
}

export type IpcacheEntry = RouterIpcacheEntryValue;
export type RouteEntry = RouterRouteEntryValue;

/** One node's full desired state, keyed by prefix and by CIDR. */
export interface NodeState {
  readonly ipcache: ReadonlyMap<string, IpcacheEntry>;
  readonly routes: ReadonlyMap<string, RouteEntry>;
}

/** What changed in one node's state in one revision. */
export interface NodeUpdate {
  readonly node: string;
  readonly revision: number;
  /** The node is gone: its deletes remove everything it had. */
  readonly gone: boolean;
  readonly ipcacheUpserts: readonly IpcacheEntry[];
  readonly ipcacheDeletes: readonly string[];
  readonly routeUpserts: readonly RouteEntry[];
  readonly routeDeletes: readonly string[];
  /** Sizes of the node's state after this update. */
  readonly ipcacheEntries: number;
  readonly routes: number;
}

export function emptyState(): {
  ipcache: Map<string, IpcacheEntry>;
  routes: Map<string, RouteEntry>;
} {
  return { ipcache: new Map(), routes: new Map() };
}

export function sameIpcacheEntry(
  a: IpcacheEntry | undefined,
  b: IpcacheEntry | undefined,
): boolean {
  if (a === undefined || b === undefined) return a === b;
  return (
    a.prefix === b.prefix &&
    a.identity === b.identity &&
    a.kind === b.kind &&
    a.hostNode === b.hostNode &&
    a.hostAddress === b.hostAddress &&
    a.local === b.local &&
    a.pod?.namespace === b.pod?.namespace &&
    a.pod?.name === b.pod?.name
  );
}

export function sameRoute(a: RouteEntry | undefined, b: RouteEntry | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return (
    a.family === b.family &&
    a.cidr === b.cidr &&
    a.viaNode === b.viaNode &&
    a.via === b.via &&
    // One mode today ('native'); kept so that the tunnel mode the contract foresees is compared.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
    a.mode === b.mode
  );
}
