import { parsePrefixLenient } from '@dyad/netaddr';
import { canonicalPrefix } from './datapath/desired-maps.ts';
import { AF_INET, AF_INET6, RTM, RTPROT_DYAD_NODE, routeBody } from './netlink/message.ts';
import type { Netns } from './netlink/netns.ts';
import { listRoutes } from './netlink/rtnl.ts';
import type { NetlinkRequest } from './netlink/socket.ts';
import { ENOENT, ESRCH } from './netlink/socket.ts';
import { NLM_F_CREATE, NLM_F_REPLACE } from './netlink/message.ts';

/** One route of the node's own stack: another node's pod block via that node's address. */
export interface NodeRoute {
  readonly cidr: string;
  readonly via: string;
}

/** What the kernel's table needs to become `want`, from `have` (both by canonical cidr). */
export function routeChanges(
  want: ReadonlyMap<string, NodeRoute>,
  have: ReadonlyMap<string, NodeRoute>,
): { readonly add: NodeRoute[]; readonly remove: NodeRoute[] } {
  const add = [...want].filter(([k, r]) => have.get(k)?.via !== r.via).map(([, r]) => r);
  const remove = [...have].filter(([k]) => !want.has(k)).map(([, r]) => r);
  return { add, remove };
}

function routeRequest(type: number, r: NodeRoute): NetlinkRequest {
  const p = parsePrefixLenient(r.cidr);
  const dst = r.cidr.split('/')[0] ?? r.cidr;
  return {
    type,
    flags: type === RTM.NEWROUTE ? NLM_F_CREATE | NLM_F_REPLACE : 0,
    body: routeBody({ dst, dstLen: p.length, gateway: r.via, protocol: RTPROT_DYAD_NODE }),
    what: `${type === RTM.NEWROUTE ? 'route' : 'remove route'} ${r.cidr} via ${r.via}`,
    ...(type === RTM.DELROUTE ? { ok: [ENOENT, ESRCH] } : {}),
  };
}

/**
 * The node's own routes to the pod blocks of other nodes, both families, as the router names
 * them: the node's processes (kubelet probes, host-network pods) reach remote pods as the pods
 * do. Routes carry their own rtm_protocol, so the ones left from before a restart are found and
 * brought in line, and nobody else's route is touched.
 */
export class NodeRoutes {
  readonly #netns: Netns;
  readonly #want = new Map<string, NodeRoute>();

  constructor(netns: Netns) {
    this.#netns = netns;
  }

  /** Replaces every route (a snapshot), then applies. */
  replace(routes: readonly NodeRoute[]): void {
    this.#want.clear();
    for (const r of routes) this.#want.set(canonicalPrefix(r.cidr), r);
    this.sync();
  }

  set(route: NodeRoute): void {
    this.#want.set(canonicalPrefix(route.cidr), route);
    this.sync();
  }

  delete(cidr: string): void {
    this.#want.delete(canonicalPrefix(cidr));
    this.sync();
  }

  /** Removes every Dyad node route (uninstall); returns how many there were. */
  clear(): number {
    this.#want.clear();
    return this.sync().removed;
  }

  /** Makes the kernel's Dyad node routes equal the wanted ones. */
  sync(): { added: number; removed: number } {
    const sock = this.#netns.socketHere();
    try {
      const have = new Map<string, NodeRoute>();
      for (const af of [AF_INET, AF_INET6])
        for (const r of listRoutes(sock, af))
          if (r.protocol === RTPROT_DYAD_NODE && r.dst !== undefined && r.gateway !== undefined) {
            const cidr = canonicalPrefix(`${r.dst}/${r.dstLen}`);
            have.set(cidr, { cidr, via: r.gateway });
          }
      const { add, remove } = routeChanges(this.#want, have);
      const reqs = [
        ...remove.map((r) => routeRequest(RTM.DELROUTE, r)),
        ...add.map((r) => routeRequest(RTM.NEWROUTE, r)),
      ];
      if (reqs.length > 0) sock.apply(reqs);
      return { added: add.length, removed: remove.length };
    } finally {
      sock.close();
    }
  }
}
