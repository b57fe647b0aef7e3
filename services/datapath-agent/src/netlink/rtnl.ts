// The netlink conversations of an endpoint: what is created on the host side and in the pod, and
// how it is read back for CHECK and restore.
import {
  AF_UNSPEC,
  IFF_UP,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  RTM,
  addrBody,
  decodeAddress,
  decodeLink,
  decodeNeighbour,
  decodeRoute,
  ifaddrmsg,
  ifinfomsg,
  linkByNameBody,
  linkDumpBody,
  ndmsg,
  neighBody,
  newVethBody,
  routeBody,
  rtmsg,
} from './message.ts';
import type { Address, Link, Neighbour, Route, VethSpec } from './message.ts';
import type { NetlinkRequest, NetlinkSocket } from './socket.ts';
import { EEXIST, ENODEV } from './socket.ts';

export interface FamilyPlumbing {
  /** Pod address (configured /32 or /128). */
  readonly address: string;
  /** Node gateway the pod routes through; held by every host-side veth. */
  readonly gateway: string;
}

export interface HostSidePlan {
  readonly hostIfindex: number;
  readonly podMac: string;
  readonly ipv4?: FamilyPlumbing;
  readonly ipv6?: FamilyPlumbing;
}

export interface PodSidePlan {
  readonly podIfindex: number;
  readonly hostMac: string;
  readonly ipv4?: FamilyPlumbing;
  readonly ipv6?: FamilyPlumbing;
}

const CREATE = NLM_F_CREATE | NLM_F_EXCL;
const UPSERT = NLM_F_CREATE | NLM_F_REPLACE;

export function linkByName(sock: NetlinkSocket, name: string): Link | undefined {
  const m = sock.get(RTM.GETLINK, linkByNameBody(name), `get link ${name}`);
  return m ? decodeLink(m.payload) : undefined;
}

export function listLinks(sock: NetlinkSocket): Link[] {
  return sock.dump(RTM.GETLINK, linkDumpBody(), 'list links').map((m) => decodeLink(m.payload));
}

export function createVeth(sock: NetlinkSocket, spec: VethSpec): void {
  sock.apply([
    {
      type: RTM.NEWLINK,
      flags: CREATE,
      body: newVethBody(spec),
      what: `create veth ${spec.name} / ${spec.peer.name}`,
    },
  ]);
}

/** Deletes a link (a veth takes its peer along); false when there was none. */
export function deleteLink(sock: NetlinkSocket, name: string): boolean {
  const link = linkByName(sock, name);
  if (!link) return false;
  const [o] = sock.batch([
    {
      type: RTM.DELLINK,
      flags: 0,
      body: ifinfomsg({ index: link.index }),
      what: `delete link ${name}`,
      ok: [ENODEV],
    },
  ]);
  if (o && o.errno !== 0) sock.apply([o.request]);
  return true;
}

export function setLinkUp(sock: NetlinkSocket, index: number, what: string): void {
  sock.apply([
    {
      type: RTM.NEWLINK,
      flags: 0,
      body: ifinfomsg({ index, flags: IFF_UP, change: IFF_UP }),
      what,
    },
  ]);
}

/**
 * Host side of an endpoint: the gateways on the veth (so the node answers for them), a route
 * and a permanent neighbour per pod address (so the node's own stack reaches the pod without
 * ARP/ND). Repeating it is harmless.
 */
export function hostSideRequests(p: HostSidePlan): NetlinkRequest[] {
  const out: NetlinkRequest[] = [];
  for (const [fam, len] of [
    [p.ipv4, 32],
    [p.ipv6, 128],
  ] as const) {
    if (fam === undefined) continue;
    out.push({
      type: RTM.NEWADDR,
      flags: CREATE,
      body: addrBody({
        index: p.hostIfindex,
        address: fam.gateway,
        prefixLen: len,
        nodad: true,
        noPrefixRoute: true,
      }),
      what: `gateway ${fam.gateway} on host veth`,
      ok: [EEXIST],
    });
    out.push({
      type: RTM.NEWROUTE,
      flags: UPSERT,
      body: routeBody({ dst: fam.address, dstLen: len, oif: p.hostIfindex }),
      what: `route ${fam.address}/${len} to the pod`,
    });
    out.push({
      type: RTM.NEWNEIGH,
      flags: UPSERT,
      body: neighBody({ index: p.hostIfindex, address: fam.address, mac: p.podMac }),
      what: `neighbour ${fam.address} on host veth`,
    });
  }
  return out;
}

/**
 * Pod side: its addresses without duplicate address detection (IPAM guarantees uniqueness, and
 * DAD would hold IPv6 back ~2 s), the host veth as a permanent gateway neighbour, and a default
 * route per family via the gateway, on-link.
 */
export function podSideRequests(p: PodSidePlan): NetlinkRequest[] {
  const out: NetlinkRequest[] = [
    {
      type: RTM.NEWLINK,
      flags: 0,
      body: ifinfomsg({ index: p.podIfindex, flags: IFF_UP, change: IFF_UP }),
      what: 'set the pod interface up',
    },
  ];
  for (const [fam, len, unspecified] of [
    [p.ipv4, 32, '0.0.0.0'],
    [p.ipv6, 128, '::'],
  ] as const) {
    if (fam === undefined) continue;
    out.push({
      type: RTM.NEWADDR,
      flags: CREATE,
      body: addrBody({ index: p.podIfindex, address: fam.address, prefixLen: len, nodad: true }),
      what: `address ${fam.address}/${len} in the pod`,
      ok: [EEXIST],
    });
    out.push({
      type: RTM.NEWNEIGH,
      flags: UPSERT,
      body: neighBody({ index: p.podIfindex, address: fam.gateway, mac: p.hostMac }),
      what: `gateway neighbour ${fam.gateway} in the pod`,
    });
    out.push({
      type: RTM.NEWROUTE,
      flags: UPSERT,
      body: routeBody({
        dst: unspecified,
        dstLen: 0,
        oif: p.podIfindex,
        gateway: fam.gateway,
        onlink: true,
      }),
      what: `default route via ${fam.gateway} in the pod`,
    });
  }
  return out;
}

export function listAddresses(sock: NetlinkSocket, index: number): Address[] {
  return sock
    .dump(RTM.GETADDR, ifaddrmsg({ family: AF_UNSPEC, prefixLen: 0, index }), 'list addresses')
    .map((m) => decodeAddress(m.payload))
    .filter((a) => a.index === index);
}

export function listRoutes(sock: NetlinkSocket, family: number): Route[] {
  return sock
    .dump(RTM.GETROUTE, rtmsg({ family, dstLen: 0, table: 0, protocol: 0, type: 0 }), 'list routes')
    .map((m) => decodeRoute(m.payload));
}

export function listNeighbours(sock: NetlinkSocket, index: number): Neighbour[] {
  return (
    sock
      // strict dump checking wants a zero ifindex in the header: filter here instead
      .dump(RTM.GETNEIGH, ndmsg({ family: AF_UNSPEC, index: 0, state: 0 }), 'list neighbours')
      .map((m) => decodeNeighbour(m.payload))
      .filter((n) => n.index === index)
  );
}
