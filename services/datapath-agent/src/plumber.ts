import type { NodeDatapath } from './datapath/node.ts';
import type { Endpoint } from './endpoint.ts';
import { CniError, NetnsError } from './errors.ts';
import { CniCode } from './cni/spec.ts';
import type { Link } from './netlink/message.ts';
import { AF_INET, AF_INET6, NUD_PERMANENT } from './netlink/message.ts';
import type { Netns } from './netlink/netns.ts';
import {
  createVeth,
  deleteLink,
  hostSideRequests,
  linkByName,
  listAddresses,
  listLinks,
  listNeighbours,
  listRoutes,
  podSideRequests,
} from './netlink/rtnl.ts';
import type { NetlinkSocket } from './netlink/socket.ts';

/** What a pod's interface pair is made of; an endpoint minus its datapath state. */
export type PlumbSpec = Pick<
  Endpoint,
  'ifName' | 'netns' | 'mac' | 'hostIfName' | 'hostMac' | 'mtu' | 'ipv4' | 'ipv6'
>;

/** An open pod network namespace: its fd and a netlink socket inside it. */
export interface PodNetns {
  readonly fd: number;
  readonly sock: NetlinkSocket;
}

/**
 * Pod networking over rtnetlink: the veth pair, the pod's addresses, routes and gateway
 * neighbours, the host side's gateways, routes and neighbours, and the tc programs on the host
 * veth. One code path makes an endpoint for ADD and remakes it on restore.
 */
export class PodPlumber {
  readonly #netns: Netns;
  readonly #datapath: NodeDatapath;

  constructor(netns: Netns, datapath: NodeDatapath) {
    this.#netns = netns;
    this.#datapath = datapath;
  }

  /** Opens a pod's netns for ADD; CNI code 4 when the path is no usable netns. */
  openPod(path: string): PodNetns {
    const o = this.#netns.open(path);
    if (!('fd' in o)) {
      const why =
        o.problem === 'missing'
          ? `does not exist (errno ${o.errno})`
          : o.problem === 'own-netns'
            ? "is the agent's own network namespace"
            : 'is not a network namespace';
      throw new CniError(
        CniCode.invalidEnvironment,
        'invalid CNI_NETNS',
        `CNI_NETNS ${path} ${why}`,
      );
    }
    try {
      return { fd: o.fd, sock: this.#netns.socketIn(o.fd) };
    } catch (e) {
      this.#netns.close(o.fd);
      if (e instanceof NetnsError)
        throw new CniError(
          CniCode.invalidEnvironment,
          'invalid CNI_NETNS',
          `CNI_NETNS ${path} is not a network namespace (setns: errno ${e.errno})`,
          { cause: e },
        );
      throw e;
    }
  }

  /** The pod's netns if it still exists (restore); undefined when it is gone. */
  tryOpenPod(path: string): PodNetns | undefined {
    try {
      return this.openPod(path);
    } catch {
      return undefined;
    }
  }

  closePod(pod: PodNetns): void {
    pod.sock.close();
    this.#netns.close(pod.fd);
  }

  podHasLink(pod: PodNetns, name: string): boolean {
    return linkByName(pod.sock, name) !== undefined;
  }

  /**
   * Makes the veth pair (replacing leftovers of both ends), configures both sides and attaches
   * the programs; returns the host veth's ifindex. Throws with whatever it made still in place:
   * the caller removes it with removeHostLink (the pod end goes with it).
   */
  plumb(pod: PodNetns, spec: PlumbSpec): number {
    const host = this.#netns.socketHere();
    try {
      deleteLink(host, spec.hostIfName);
      deleteLink(pod.sock, spec.ifName);
      createVeth(host, {
        name: spec.hostIfName,
        mac: spec.hostMac,
        mtu: spec.mtu,
        peer: { name: spec.ifName, mac: spec.mac, netnsFd: pod.fd },
      });
      const hostLink = linkByName(host, spec.hostIfName);
      const podLink = linkByName(pod.sock, spec.ifName);
      if (!hostLink || !podLink)
        throw new CniError(CniCode.internal, 'veth vanished after creation', spec.hostIfName);
      const fams = {
        ...(spec.ipv4 ? { ipv4: spec.ipv4 } : {}),
        ...(spec.ipv6 ? { ipv6: spec.ipv6 } : {}),
      };
      host.apply(hostSideRequests({ hostIfindex: hostLink.index, podMac: spec.mac, ...fams }));
      pod.sock.apply(
        podSideRequests({ podIfindex: podLink.index, hostMac: spec.hostMac, ...fams }),
      );
      return hostLink.index;
    } finally {
      host.close();
    }
  }

  attach(hostIfindex: number): void {
    this.#datapath.attachEndpoint(hostIfindex);
  }

  /** Deletes a host veth (its pod end goes with it); false when there was none. */
  removeHostLink(name: string): boolean {
    const host = this.#netns.socketHere();
    try {
      return deleteLink(host, name);
    } finally {
      host.close();
    }
  }

  hostLinks(): Link[] {
    const host = this.#netns.socketHere();
    try {
      return listLinks(host);
    } finally {
      host.close();
    }
  }

  /** Every difference between the kernel and what ADD made, for CHECK. */
  inspect(ep: Endpoint): string[] {
    return [...this.#inspectHost(ep), ...this.#inspectPod(ep)];
  }

  #inspectHost(ep: Endpoint): string[] {
    const problems: string[] = [];
    const host = this.#netns.socketHere();
    try {
      const link = linkByName(host, ep.hostIfName);
      if (!link) return [`host veth ${ep.hostIfName} is missing`];
      if (link.index !== ep.hostIfindex)
        problems.push(
          `host veth ${ep.hostIfName} has ifindex ${link.index}, expected ${ep.hostIfindex}`,
        );
      if ((link.flags & 1) === 0) problems.push(`host veth ${ep.hostIfName} is down`);
      const a = this.#datapath.attached(link.index);
      if (a.ingress === undefined) problems.push('dy_from_container is not attached (tc ingress)');
      if (a.egress === undefined) problems.push('dy_to_container is not attached (tc egress)');
    } finally {
      host.close();
    }
    return problems;
  }

  #inspectPod(ep: Endpoint): string[] {
    const pod = this.tryOpenPod(ep.netns);
    if (!pod) return [`network namespace ${ep.netns} is gone`];
    const problems: string[] = [];
    try {
      const link = linkByName(pod.sock, ep.ifName);
      if (!link) return [`${ep.ifName} is missing in ${ep.netns}`];
      if (link.mac !== ep.mac)
        problems.push(`${ep.ifName} has MAC ${link.mac ?? '?'}, expected ${ep.mac}`);
      if ((link.flags & 1) === 0) problems.push(`${ep.ifName} is down`);
      const have = new Set(
        listAddresses(pod.sock, link.index).map((a) => `${a.address}/${a.prefixLen}`),
      );
      if (ep.ipv4 && !have.has(`${ep.ipv4.address}/32`))
        problems.push(`${ep.ipv4.address}/32 missing on ${ep.ifName}`);
      if (ep.ipv6 && !have.has(`${ep.ipv6.address}/128`))
        problems.push(`${ep.ipv6.address}/128 missing on ${ep.ifName}`);
      for (const [fam, af] of [
        [ep.ipv4, AF_INET],
        [ep.ipv6, AF_INET6],
      ] as const) {
        if (!fam) continue;
        const def = listRoutes(pod.sock, af).find(
          (r) => r.dstLen === 0 && r.oif === link.index && r.gateway === fam.gateway,
        );
        if (!def) problems.push(`no default route via ${fam.gateway} on ${ep.ifName}`);
      }
      const neigh = listNeighbours(pod.sock, link.index);
      for (const fam of [ep.ipv4, ep.ipv6]) {
        if (!fam) continue;
        const n = neigh.find((x) => x.address === fam.gateway);
        if (!n || n.mac !== ep.hostMac || (n.state & NUD_PERMANENT) === 0)
          problems.push(`gateway ${fam.gateway} is not a permanent neighbour at ${ep.hostMac}`);
      }
    } finally {
      this.closePod(pod);
    }
    return problems;
  }
}
