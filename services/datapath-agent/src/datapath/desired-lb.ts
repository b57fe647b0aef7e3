import type { RouterServiceEntryValue } from '@dyad/contracts';
import { LbBackendFlags, LbServiceFlags, maglevTable } from '@dyad/libbpf-ts';
import type { LbBackend, LbService, LbServiceKey } from '@dyad/libbpf-ts';

/**
 * What the load-balancing maps should hold, from the router's Services for this node: one
 * dy_lb_services entry and one Maglev table per frontend (cluster IP or, for NodePort, the
 * node's address, with port and protocol), one
 * dy_lb_backends entry per backend (address, port). Ids come from `LbIds`, which keeps them
 * stable for as long as the frontend or backend exists (the kernel's flows hold them).
 */

/** The router's Services for this node by `namespace/name`; until `synced` the maps are left alone. */
export interface ServiceState {
  readonly synced: boolean;
  readonly entries: ReadonlyMap<string, RouterServiceEntryValue>;
}

export interface DesiredLb {
  readonly services: ReadonlyArray<readonly [LbServiceKey, LbService]>;
  readonly maglev: ReadonlyArray<readonly [number, readonly number[]]>;
  readonly backends: ReadonlyArray<readonly [number, LbBackend]>;
}

export function frontendName(k: LbServiceKey): string {
  return `${k.address}|${k.port}|${k.protocol}`;
}

export function backendName(b: { readonly address: string; readonly port: number }): string {
  return `${b.address}|${b.port}`;
}

/**
 * Frontend and backend ids. An id is never handed out twice while the agent runs (a flow that
 * still names a removed backend must not reach a new one), and `seed` takes the kernel's ids
 * at start-up, so a restarted agent keeps every id the pinned maps hold.
 */
export class LbIds {
  readonly #frontends = new Map<string, number>();
  readonly #backends = new Map<string, number>();
  #next = 1;

  seed(kind: 'frontend' | 'backend', name: string, id: number): void {
    (kind === 'frontend' ? this.#frontends : this.#backends).set(name, id);
    this.#next = Math.max(this.#next, id + 1);
  }

  frontend(name: string): number {
    return this.#id(this.#frontends, name);
  }

  backend(name: string): number {
    return this.#id(this.#backends, name);
  }

  /** Forgets names no longer wanted (their ids are not reused). */
  retain(frontends: ReadonlySet<string>, backends: ReadonlySet<string>): void {
    for (const n of this.#frontends.keys()) if (!frontends.has(n)) this.#frontends.delete(n);
    for (const n of this.#backends.keys()) if (!backends.has(n)) this.#backends.delete(n);
  }

  #id(m: Map<string, number>, name: string): number {
    let id = m.get(name);
    if (id === undefined) {
      id = this.#next++;
      if (id > 0xffffffff) throw new RangeError('LB ids exhausted');
      m.set(name, id);
    }
    return id;
  }
}

export function desiredLb(state: ServiceState, ids: LbIds): DesiredLb {
  const services = new Map<string, [LbServiceKey, LbService]>();
  const maglev: Array<[number, number[]]> = [];
  const backends = new Map<number, LbBackend>();
  // by namespace/name, so which of two Services claiming one frontend wins is the same each pass
  const ordered = [...state.entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [, svc] of ordered) {
    for (const f of svc.frontends) {
      const key: LbServiceKey = { address: f.address, port: f.port, protocol: f.protocol };
      const name = frontendName(key);
      // two Services claiming one frontend: the first keeps it
      if (services.has(name)) continue;
      const id = ids.frontend(name);
      const ready: Array<{ id: number; name: string }> = [];
      for (const b of f.backends) {
        const bn = backendName(b);
        const bid = ids.backend(bn);
        const flags = b.state === 'terminating' ? LbBackendFlags.TERMINATING : 0;
        const had = backends.get(bid);
        // one address:port ready for one frontend is ready
        if (had === undefined || (had.flags & LbBackendFlags.TERMINATING && flags === 0))
          backends.set(bid, { address: b.address, port: b.port, flags });
        if (b.state === 'ready') ready.push({ id: bid, name: bn });
      }
      const affinity = svc.affinityTimeoutSeconds;
      let flags = affinity !== undefined ? LbServiceFlags.AFFINITY : 0;
      if (f.type === 'NodePort') flags |= LbServiceFlags.NODEPORT;
      if (f.type === 'NodePort' && f.externalTrafficPolicy === 'Local')
        flags |= LbServiceFlags.LOCAL;
      services.set(name, [
        key,
        { id, backends: ready.length, affinityTimeoutS: affinity ?? 0, flags },
      ]);
      maglev.push([id, maglevTable(ready)]);
    }
  }
  return { services: [...services.values()], maglev, backends: [...backends.entries()] };
}
