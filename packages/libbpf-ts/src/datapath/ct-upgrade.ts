import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Libbpf } from '../libbpf.ts';
import type { BpfMap } from '../map.ts';
import { MapType } from '../map-types.ts';
import { conntrackCodec } from './conntrack.ts';
import type { ConntrackTables, CtEntry, CtKey } from './conntrack.ts';
import { DatapathMaps } from './constants.ts';
import type { EndpointInfo, EndpointKey } from './endpoints.ts';

/**
 * The datapath before per-endpoint conntrack pinned dy_conntrack as one shared LRU hash; libbpf
 * cannot reuse that pin for the map of maps, so the load would fail. Takes the old map's flows
 * and removes its pin (programs still attached keep the old map until they are replaced).
 * Returns undefined when the pin is absent or already the new shape.
 */
export function takeSharedConntrack(
  lib: Libbpf,
  pinDir: string,
): Array<[CtKey, CtEntry]> | undefined {
  const path = join(pinDir, DatapathMaps.conntrack);
  if (!existsSync(path)) return undefined;
  let flows: Array<[CtKey, CtEntry]>;
  {
    using raw = lib.openPinnedMap(path);
    if (raw.info.type !== MapType.LRU_HASH) return undefined;
    using old = lib.openPinnedMap(path, conntrackCodec);
    flows = [...old.entries()];
  }
  rmSync(path);
  return flows;
}

/**
 * Puts flows of the shared map into their endpoints' tables: a flow belongs to the pod whose
 * direction admitted it (egress: its source, ingress: its destination). Flows of addresses that
 * are no endpoint any more are dropped. Returns how many were carried over.
 */
export function spreadConntrack(
  flows: ReadonlyArray<readonly [CtKey, CtEntry]>,
  endpoints: BpfMap<EndpointKey, EndpointInfo>,
  tables: ConntrackTables,
): number {
  const byEndpoint = new Map<number, Array<readonly [CtKey, CtEntry]>>();
  for (const flow of flows) {
    const [k] = flow;
    const ep = endpoints.lookup({ address: k.direction === 'egress' ? k.src : k.dst });
    if (!ep) continue;
    const list = byEndpoint.get(ep.endpointId) ?? [];
    list.push(flow);
    byEndpoint.set(ep.endpointId, list);
  }
  let n = 0;
  for (const [id, list] of byEndpoint) {
    tables.ensure(id);
    using table = tables.open(id);
    if (!table) continue;
    for (const [k, v] of list) {
      table.update(k, v);
      n++;
    }
  }
  return n;
}
