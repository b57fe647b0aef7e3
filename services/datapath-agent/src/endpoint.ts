import { createHash } from 'node:crypto';
import type { PodRef } from './cni/request.ts';

/** One address of an endpoint with the node block it came from and the gateway the pod uses. */
export interface EndpointAddress {
  readonly address: string;
  /** The node's block in that family, as IPAM gave it. */
  readonly cidr: string;
  /** The pod's default gateway in that family (the node's router address from IPAM). */
  readonly gateway: string;
}

/** One attachment (container id + interface) as the agent made it; persisted in the state file. */
export interface Endpoint {
  readonly containerId: string;
  readonly ifName: string;
  readonly network: string;
  readonly netns: string;
  readonly pod: PodRef;
  readonly endpointId: number;
  readonly ipv4?: EndpointAddress;
  readonly ipv6?: EndpointAddress;
  /** Pod-side MAC. */
  readonly mac: string;
  readonly hostIfName: string;
  readonly hostIfindex: number;
  /** Host-side MAC: the pod's gateway neighbour in both families. */
  readonly hostMac: string;
  readonly mtu: number;
  readonly identity: number;
  /** EndpointFlags bits (policy enforcement). */
  readonly flags: number;
  readonly createdAt: string;
}

export function attachmentKey(containerId: string, ifName: string): string {
  return `${containerId}/${ifName}`;
}

export function endpointKey(ep: Pick<Endpoint, 'containerId' | 'ifName'>): string {
  return attachmentKey(ep.containerId, ep.ifName);
}

function digest(containerId: string, ifName: string): Buffer {
  return createHash('sha256').update(`${containerId}\0${ifName}`).digest();
}

/**
 * Host-side veth name: a prefix plus hex of a hash of the attachment, so a repeated ADD or a
 * restarted agent finds the same device. Linux names are at most 15 bytes.
 */
export function hostIfName(prefix: string, containerId: string, ifName: string): string {
  const room = 15 - prefix.length;
  return prefix + digest(containerId, ifName).toString('hex').slice(0, room);
}

function mac(first: number, bytes: Buffer): string {
  const b = [first, ...bytes.subarray(0, 5)];
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/**
 * Stable MACs derived from the attachment: locally administered unicast, pod side 0x0a.., host
 * side 0x0e.., so the two ends never collide and a re-created endpoint keeps its neighbours valid.
 */
export function endpointMacs(containerId: string, ifName: string): { pod: string; host: string } {
  const d = digest(containerId, ifName);
  return { pod: mac(0x0a, d.subarray(8)), host: mac(0x0e, d.subarray(16)) };
}

/** The lowest endpoint id not in use (ids start at 1; 0 means "none" in the datapath). */
export function nextEndpointId(used: Iterable<number>): number {
  const taken = new Set(used);
  let id = 1;
  while (taken.has(id)) id++;
  return id;
}
