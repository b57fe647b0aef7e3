import type { Family } from '@dyad/netaddr';
import type { EndpointSliceObject, RouterServiceEntryValue, ServiceObject } from '@dyad/contracts';
import { compileService, sameServiceEntry } from './lb-compile.ts';

/** A node's address per family (its NodePort frontends). */
export type NodeAddressesOf = (node: string) => Partial<Record<Family, string>> | undefined;

/** One node's Services by `namespace/name`. */
export type NodeServices = Map<string, RouterServiceEntryValue>;

export interface ServiceChange {
  readonly node: string;
  readonly upserts: readonly RouterServiceEntryValue[];
  /** `namespace/name` keys. */
  readonly deletes: readonly string[];
}

export function serviceKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/**
 * The Services and EndpointSlices the router has seen, and what it last published per node.
 * Changes mark Services dirty; `drain(nodes, families, addressesOf)` compiles the dirty ones for
 * every node (all of them when the node set, their addresses or the cluster's families changed)
 * and returns what differs from the published state, which it then takes as published.
 */
export class ServiceTable {
  readonly #services = new Map<string, ServiceObject>();
  /** slice key (`namespace/name`) → slice; and the slices of each Service. */
  readonly #slices = new Map<string, EndpointSliceObject>();
  readonly #slicesByService = new Map<string, Set<string>>();
  readonly #published = new Map<string, NodeServices>();
  readonly #dirty = new Set<string>();
  #allDirty = true;
  #lastNodes = '';
  #lastFamilies = '';

  /** What the stream holds (start-up, reconcile): the next drain compares against it. */
  setPublished(node: string, services: NodeServices): void {
    this.#published.set(node, new Map(services));
    this.#allDirty = true;
  }

  published(node: string): NodeServices {
    return this.#published.get(node) ?? new Map<string, RouterServiceEntryValue>();
  }

  setService(s: ServiceObject | undefined, namespace: string, name: string): void {
    const key = serviceKey(namespace, name);
    if (s === undefined) this.#services.delete(key);
    else this.#services.set(key, s);
    this.#dirty.add(key);
  }

  setSlice(s: EndpointSliceObject | undefined, namespace: string, name: string): void {
    const key = serviceKey(namespace, name);
    const prev = this.#slices.get(key);
    if (prev?.serviceName !== undefined) {
      const svc = serviceKey(namespace, prev.serviceName);
      this.#slicesByService.get(svc)?.delete(key);
      this.#dirty.add(svc);
    }
    if (s === undefined) {
      this.#slices.delete(key);
      return;
    }
    this.#slices.set(key, s);
    if (s.serviceName !== undefined) {
      const svc = serviceKey(namespace, s.serviceName);
      let set = this.#slicesByService.get(svc);
      if (set === undefined) this.#slicesByService.set(svc, (set = new Set()));
      set.add(key);
      this.#dirty.add(svc);
    }
  }

  /** Every Service's entry for one node, as the inputs say now. */
  compute(
    node: string,
    families: ReadonlySet<Family>,
    nodeAddresses?: Partial<Record<Family, string>>,
  ): NodeServices {
    const out: NodeServices = new Map();
    for (const key of this.#services.keys()) {
      const e = this.#compile(key, node, families, nodeAddresses);
      if (e !== undefined) out.set(key, e);
    }
    return out;
  }

  #compile(
    key: string,
    node: string,
    families: ReadonlySet<Family>,
    nodeAddresses: Partial<Record<Family, string>> | undefined,
  ): RouterServiceEntryValue | undefined {
    const service = this.#services.get(key);
    if (service === undefined) return undefined;
    const slices: EndpointSliceObject[] = [];
    for (const k of this.#slicesByService.get(key) ?? []) {
      const s = this.#slices.get(k);
      if (s !== undefined) slices.push(s);
    }
    return compileService({
      service,
      slices,
      families,
      node,
      ...(nodeAddresses !== undefined ? { nodeAddresses } : {}),
    });
  }

  /** What to publish so every node's stored Services equal the computed ones. */
  drain(
    nodes: readonly string[],
    families: ReadonlySet<Family>,
    addressesOf: NodeAddressesOf = () => undefined,
  ): ServiceChange[] {
    const nodeSig = [...nodes]
      .sort()
      .map((n) => `${n}=${addressesOf(n)?.IPv4 ?? ''}/${addressesOf(n)?.IPv6 ?? ''}`)
      .join(',');
    const famSig = [...families].sort().join(',');
    const all = this.#allDirty || nodeSig !== this.#lastNodes || famSig !== this.#lastFamilies;
    this.#lastNodes = nodeSig;
    this.#lastFamilies = famSig;
    const keys = all
      ? new Set([
          ...this.#services.keys(),
          ...[...this.#published.values()].flatMap((m) => [...m.keys()]),
        ])
      : new Set(this.#dirty);
    this.#allDirty = false;
    this.#dirty.clear();

    const changes: ServiceChange[] = [];
    const live = new Set(nodes);
    for (const node of nodes) {
      const have = this.#published.get(node) ?? new Map<string, RouterServiceEntryValue>();
      const upserts: RouterServiceEntryValue[] = [];
      const deletes: string[] = [];
      for (const key of keys) {
        const want = this.#compile(key, node, families, addressesOf(node));
        const had = have.get(key);
        if (want === undefined) {
          if (had !== undefined) {
            deletes.push(key);
            have.delete(key);
          }
        } else if (had === undefined || !sameServiceEntry(had, want)) {
          upserts.push(want);
          have.set(key, want);
        }
      }
      this.#published.set(node, have);
      if (upserts.length + deletes.length > 0) changes.push({ node, upserts, deletes });
    }
    // a node that is gone loses its Services
    for (const [node, have] of this.#published) {
      if (live.has(node)) continue;
      if (have.size > 0) changes.push({ node, upserts: [], deletes: [...have.keys()] });
      this.#published.delete(node);
    }
    return changes;
  }
}
