import type { Claim, GlobalEntry } from './claims.ts';
import {
  best,
  bestRoute,
  cidrClaims,
  claimKey,
  endpointClaims,
  globalEntry,
  nodeClaims,
  nodeRoutes,
  normalizeNode,
  project,
} from './claims.ts';
import type {
  EndpointInput,
  IpcacheEntry,
  NodeInput,
  NodeState,
  NodeUpdate,
  RouteEntry,
} from './model.ts';
import { sameIpcacheEntry, sameRoute } from './model.ts';

interface MutableUpdate {
  node: string;
  gone: boolean;
  ipcacheUpserts: IpcacheEntry[];
  ipcacheDeletes: string[];
  routeUpserts: RouteEntry[];
  routeDeletes: string[];
  /** A new node gets an update even when its state is empty, so its agent learns it is complete. */
  forced: boolean;
}

function sameGlobal(a: GlobalEntry | undefined, b: GlobalEntry | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return sameIpcacheEntry({ ...a, local: false }, { ...b, local: false });
}

/**
 * The router's incremental engine. Inputs change one node or endpoint at a time; `drain()`
 * returns, per node, what changed in its desired state since the previous drain, stamped with a
 * new revision. Every node's state is the same global ipcache (plus a `local` flag) and the
 * routes to every other node, so the engine keeps the global tables once and projects them per
 * node: memory grows with entries + nodes, not with their product.
 */
export class RouterCore {
  readonly #nodes = new Map<string, NodeInput>();
  readonly #endpoints = new Map<string, EndpointInput>();
  readonly #endpointsByNode = new Map<string, Set<string>>();
  /** prefix → claim key → claim; only active claims (an endpoint's only while its node exists). */
  readonly #claims = new Map<string, Map<string, Claim>>();
  readonly #claimPrefixes = new Map<string, string[]>();
  /** host node → prefixes some claim hosted there holds: their host address follows the node's. */
  readonly #prefixesByHost = new Map<string, Set<string>>();
  /** cidr → node → route towards that node. */
  readonly #routeClaims = new Map<string, Map<string, RouteEntry>>();
  readonly #routeCidrsByNode = new Map<string, string[]>();
  readonly #dirtyPrefixes = new Set<string>();
  readonly #dirtyCidrs = new Set<string>();
  /** The global tables and node set as of the last drain. */
  readonly #published = new Map<string, GlobalEntry>();
  readonly #publishedRoutes = new Map<string, RouteEntry>();
  readonly #publishedNodes = new Set<string>();
  readonly #nodeRevision = new Map<string, number>();
  #revision: number;

  constructor(options: { revision?: number } = {}) {
    this.#revision = options.revision ?? 0;
  }

  /** The last revision handed out. */
  get revision(): number {
    return this.#revision;
  }

  /** A fresh revision for changes published outside `drain`, e.g. by a reconcile. */
  nextRevision(): number {
    return ++this.#revision;
  }

  /** The revision of a node's last change, or undefined when it has none. */
  nodeRevision(node: string): number | undefined {
    return this.#nodeRevision.get(node);
  }

  get nodeNames(): string[] {
    return [...this.#nodes.keys()];
  }

  hasNode(name: string): boolean {
    return this.#nodes.has(name);
  }

  node(name: string): NodeInput | undefined {
    return this.#nodes.get(name);
  }

  endpoint(id: string): EndpointInput | undefined {
    return this.#endpoints.get(id);
  }

  get endpointIds(): string[] {
    return [...this.#endpoints.keys()];
  }

  setNode(name: string, input: NodeInput): void {
    const next = normalizeNode(input);
    const prev = this.#nodes.get(name);
    this.#nodes.set(name, next);
    this.#retract(claimKey.node(name));
    this.#retract(claimKey.cidr(name));
    for (const [prefix, claim] of [...nodeClaims(name, next), ...cidrClaims(name, next)]) {
      this.#assert(prefix, claim);
    }
    this.#setRoutes(name, nodeRoutes(name, next));
    if (prev === undefined) {
      for (const id of this.#endpointsByNode.get(name) ?? []) this.#activate(id);
    } else if (
      prev.addresses.IPv4 !== next.addresses.IPv4 ||
      prev.addresses.IPv6 !== next.addresses.IPv6
    ) {
      for (const p of this.#prefixesByHost.get(name) ?? []) this.#dirtyPrefixes.add(p);
    }
  }

  removeNode(name: string): void {
    if (!this.#nodes.has(name)) return;
    this.#retract(claimKey.node(name));
    this.#retract(claimKey.cidr(name));
    this.#setRoutes(name, []);
    for (const id of this.#endpointsByNode.get(name) ?? []) this.#retract(claimKey.endpoint(id));
    this.#nodes.delete(name);
  }

  setEndpoint(id: string, input: EndpointInput): void {
    const prev = this.#endpoints.get(id);
    if (prev !== undefined) {
      this.#retract(claimKey.endpoint(id));
      this.#endpointsByNode.get(prev.node)?.delete(id);
    }
    this.#endpoints.set(id, input);
    let set = this.#endpointsByNode.get(input.node);
    if (set === undefined) this.#endpointsByNode.set(input.node, (set = new Set()));
    set.add(id);
    if (this.#nodes.has(input.node)) this.#activate(id);
  }

  removeEndpoint(id: string): void {
    const prev = this.#endpoints.get(id);
    if (prev === undefined) return;
    this.#retract(claimKey.endpoint(id));
    const set = this.#endpointsByNode.get(prev.node);
    set?.delete(id);
    if (set?.size === 0) this.#endpointsByNode.delete(prev.node);
    this.#endpoints.delete(id);
  }

  /** Per-node changes since the last drain; empty when nothing changed. */
  drain(): NodeUpdate[] {
    const updates = new Map<string, MutableUpdate>();
    const upd = (node: string): MutableUpdate => {
      let u = updates.get(node);
      if (u === undefined) {
        u = {
          node,
          gone: false,
          ipcacheUpserts: [],
          ipcacheDeletes: [],
          routeUpserts: [],
          routeDeletes: [],
          forced: false,
        };
        updates.set(node, u);
      }
      return u;
    };

    // Nodes that went away lose everything they had, read from the tables before they change.
    for (const node of this.#publishedNodes) {
      if (this.#nodes.has(node)) continue;
      const u = upd(node);
      u.gone = true;
      u.forced = true;
      u.ipcacheDeletes.push(...this.#published.keys());
      for (const r of this.#publishedRoutes.values())
        if (r.viaNode !== node) u.routeDeletes.push(r.cidr);
    }

    const changes: Array<[string, GlobalEntry | undefined]> = [];
    for (const prefix of this.#dirtyPrefixes) {
      const claims = this.#claims.get(prefix);
      const winner = claims === undefined ? undefined : best(claims.values());
      const next = winner === undefined ? undefined : globalEntry(prefix, winner, this.#nodes);
      if (sameGlobal(this.#published.get(prefix), next)) continue;
      changes.push([prefix, next]);
      if (next === undefined) this.#published.delete(prefix);
      else this.#published.set(prefix, next);
    }
    this.#dirtyPrefixes.clear();

    const routeChanges: Array<[string, RouteEntry | undefined, RouteEntry | undefined]> = [];
    for (const cidr of this.#dirtyCidrs) {
      const claims = this.#routeClaims.get(cidr);
      const next = claims === undefined ? undefined : bestRoute(claims.values());
      const prev = this.#publishedRoutes.get(cidr);
      if (sameRoute(prev, next)) continue;
      routeChanges.push([cidr, prev, next]);
      if (next === undefined) this.#publishedRoutes.delete(cidr);
      else this.#publishedRoutes.set(cidr, next);
    }
    this.#dirtyCidrs.clear();

    for (const node of this.#nodes.keys()) {
      if (!this.#publishedNodes.has(node)) {
        const u = upd(node);
        u.forced = true;
        for (const g of this.#published.values()) u.ipcacheUpserts.push(project(g, node));
        for (const r of this.#publishedRoutes.values())
          if (r.viaNode !== node) u.routeUpserts.push(r);
        continue;
      }
      if (changes.length === 0 && routeChanges.length === 0) continue;
      const u = upd(node);
      for (const [prefix, next] of changes) {
        if (next === undefined) u.ipcacheDeletes.push(prefix);
        else u.ipcacheUpserts.push(project(next, node));
      }
      for (const [cidr, prev, next] of routeChanges) {
        const was = prev !== undefined && prev.viaNode !== node ? prev : undefined;
        const now = next !== undefined && next.viaNode !== node ? next : undefined;
        if (sameRoute(was, now)) continue;
        if (now === undefined) u.routeDeletes.push(cidr);
        else u.routeUpserts.push(now);
      }
    }

    this.#publishedNodes.clear();
    for (const node of this.#nodes.keys()) this.#publishedNodes.add(node);

    const real = [...updates.values()].filter(
      (u) =>
        u.forced ||
        u.ipcacheUpserts.length +
          u.ipcacheDeletes.length +
          u.routeUpserts.length +
          u.routeDeletes.length >
          0,
    );
    if (real.length === 0) return [];
    const revision = ++this.#revision;
    return real.map((u) => {
      if (u.gone) this.#nodeRevision.delete(u.node);
      else this.#nodeRevision.set(u.node, revision);
      return {
        node: u.node,
        revision,
        gone: u.gone,
        ipcacheUpserts: u.ipcacheUpserts,
        ipcacheDeletes: u.ipcacheDeletes,
        routeUpserts: u.routeUpserts,
        routeDeletes: u.routeDeletes,
        ipcacheEntries: u.gone ? 0 : this.#published.size,
        routes: u.gone ? 0 : this.#routeCount(u.node),
      };
    });
  }

  /** A node's full state as of the last drain (empty for a node not yet drained). */
  state(node: string): NodeState {
    const ipcache = new Map<string, IpcacheEntry>();
    const routes = new Map<string, RouteEntry>();
    if (!this.#publishedNodes.has(node)) return { ipcache, routes };
    for (const g of this.#published.values()) ipcache.set(g.prefix, project(g, node));
    for (const r of this.#publishedRoutes.values()) if (r.viaNode !== node) routes.set(r.cidr, r);
    return { ipcache, routes };
  }

  /** Nodes whose state exists as of the last drain. */
  get publishedNodes(): string[] {
    return [...this.#publishedNodes];
  }

  #routeCount(node: string): number {
    let n = 0;
    for (const r of this.#publishedRoutes.values()) if (r.viaNode !== node) n++;
    return n;
  }

  #activate(id: string): void {
    const ep = this.#endpoints.get(id);
    if (ep === undefined) return;
    this.#retract(claimKey.endpoint(id));
    for (const [prefix, claim] of endpointClaims(id, ep)) this.#assert(prefix, claim);
  }

  #assert(prefix: string, claim: Claim): void {
    let byKey = this.#claims.get(prefix);
    if (byKey === undefined) this.#claims.set(prefix, (byKey = new Map<string, Claim>()));
    byKey.set(claim.key, claim);
    const held = this.#claimPrefixes.get(claim.key);
    if (held === undefined) this.#claimPrefixes.set(claim.key, [prefix]);
    else held.push(prefix);
    let hosted = this.#prefixesByHost.get(claim.hostNode);
    if (hosted === undefined) this.#prefixesByHost.set(claim.hostNode, (hosted = new Set()));
    hosted.add(prefix);
    this.#dirtyPrefixes.add(prefix);
  }

  #retract(key: string): void {
    const held = this.#claimPrefixes.get(key);
    if (held === undefined) return;
    this.#claimPrefixes.delete(key);
    for (const prefix of held) {
      const byKey = this.#claims.get(prefix);
      const claim = byKey?.get(key);
      if (byKey === undefined || claim === undefined) continue;
      byKey.delete(key);
      if (byKey.size === 0) this.#claims.delete(prefix);
      let stillHosted = false;
      for (const c of byKey.values()) if (c.hostNode === claim.hostNode) stillHosted = true;
      if (!stillHosted) {
        const hosted = this.#prefixesByHost.get(claim.hostNode);
        hosted?.delete(prefix);
        if (hosted?.size === 0) this.#prefixesByHost.delete(claim.hostNode);
      }
      this.#dirtyPrefixes.add(prefix);
    }
  }

  #setRoutes(name: string, routes: readonly RouteEntry[]): void {
    for (const cidr of this.#routeCidrsByNode.get(name) ?? []) {
      const byNode = this.#routeClaims.get(cidr);
      byNode?.delete(name);
      if (byNode?.size === 0) this.#routeClaims.delete(cidr);
      this.#dirtyCidrs.add(cidr);
    }
    this.#routeCidrsByNode.delete(name);
    if (routes.length === 0) return;
    this.#routeCidrsByNode.set(
      name,
      routes.map((r) => r.cidr),
    );
    for (const r of routes) {
      let byNode = this.#routeClaims.get(r.cidr);
      if (byNode === undefined)
        this.#routeClaims.set(r.cidr, (byNode = new Map<string, RouteEntry>()));
      byNode.set(name, r);
      this.#dirtyCidrs.add(r.cidr);
    }
  }
}
