import { z } from 'zod';
import { defineMessage } from './contract.ts';
import { Cidr, FamilySchema, IpAddress } from './family.ts';
import type { StreamSpec } from './streams.ts';
import { encodeToken } from './subjects.ts';

/**
 * Router: who is where. For every node, the full ipcache (every pod address, pod CIDR and node
 * address of both families → identity and hosting node) and the inter-node forwarding entries,
 * each on its own subject under the node's root in stream `DYAD_ROUTER`, which keeps the last
 * value per subject. An agent reads its node's subjects with last-per-subject delivery for the
 * full state, then keeps consuming; one that was away resumes from the stream sequence of the
 * last message it applied and receives only the entries changed since (the stream has compacted
 * older values away), never a full resend. Node-scoped subjects also let a deployment give each
 * agent a NATS account that reads only its own node's state.
 */

export const ROUTER_SUBJECT_ROOT = 'dyad.router.v1';
export const ROUTER_STREAM = 'DYAD_ROUTER';

/**
 * Reserved security identities (0 = any, 1 = host, 2 = world are the datapath's own,
 * bpf/include/dyad/common.h). Pod identities are at or above `firstPod`; the policy service
 * allocates them (policy.ts). Never renumbered: agents and the datapath hold these numbers.
 */
export const ReservedIdentity = {
  /** A node's own addresses. */
  host: 1,
  /** Anything outside the cluster: an address no ipcache entry covers. */
  world: 2,
  /** An address in a node's pod CIDR that no known endpoint holds (yet). */
  cluster: 3,
  /**
   * Another node's addresses, as opposed to the local node's (`host`). Reserved: the router
   * still gives every node's addresses `host`.
   */
  remoteNode: 4,
  /**
   * A pod whose identity the policy service has not published yet. No policy names it, so a pod
   * that enforces a direction admits it only through a rule that allows any peer.
   */
  unknown: 5,
  /** Pod identities start here. */
  firstPod: 0x10000,
} as const;

const NodeName = z.string().min(1).max(253);
const Revision = z.number().int().min(1);

export const IpcacheEntryKind = z.enum(['pod', 'pod-cidr', 'node']);

/** One ipcache entry as a node should install it. */
export const RouterIpcacheEntry = z.object({
  /** Canonical prefix: a pod or node address as /32 or /128, or a node's pod CIDR. */
  prefix: Cidr,
  identity: z.number().int().min(1).max(0xffffffff),
  kind: IpcacheEntryKind,
  /** The node that hosts the prefix. */
  hostNode: NodeName,
  /** That node's address of the prefix's family; absent while the node has none of that family. */
  hostAddress: IpAddress.optional(),
  /** True on the node that hosts the prefix itself. */
  local: z.boolean(),
  /** For kind `pod`: whose address it is. */
  pod: z.object({ namespace: z.string().min(1), name: z.string().min(1) }).optional(),
});

/**
 * Native routing over the node fabric: traffic for `cidr` goes to node `via` (an address of the
 * same family) directly on the fabric. A later tunnel mode adds a mode value and its fields.
 */
export const RouterRouteEntry = z.object({
  family: FamilySchema,
  /** The other node's pod CIDR of this family. */
  cidr: Cidr,
  /** The node that owns the CIDR. */
  viaNode: NodeName,
  /** Its address of the same family on the node fabric: the next hop. */
  via: IpAddress,
  mode: z.enum(['native']),
});

const Envelope = {
  /** The node this state is for (the one whose agent installs it). */
  node: NodeName,
  /** The router revision in which this value was published; increases with every change. */
  revision: Revision,
};

export const RouterIpcacheEvent = defineMessage({
  type: 'io.dyad.router.ipcache.v1',
  version: 1,
  schema: z.discriminatedUnion('op', [
    z.object({ op: z.literal('upsert'), ...Envelope, entry: RouterIpcacheEntry }),
    z.object({ op: z.literal('delete'), ...Envelope, prefix: Cidr }),
  ]),
  description:
    "One ipcache entry of a node's desired state (prefix → identity and hosting node), or its removal.",
  subjectPattern: `${ROUTER_SUBJECT_ROOT}.node.{node}.ipcache.{prefix}`,
  stream: ROUTER_STREAM,
});

export const RouterRouteEvent = defineMessage({
  type: 'io.dyad.router.route.v1',
  version: 1,
  schema: z.discriminatedUnion('op', [
    z.object({ op: z.literal('upsert'), ...Envelope, route: RouterRouteEntry }),
    z.object({ op: z.literal('delete'), ...Envelope, cidr: Cidr }),
  ]),
  description:
    "One inter-node forwarding entry of a node's desired state (another node's pod CIDR → that node's address), or its removal.",
  subjectPattern: `${ROUTER_SUBJECT_ROOT}.node.{node}.route.{cidr}`,
  stream: ROUTER_STREAM,
});

export const RouterSyncEvent = defineMessage({
  type: 'io.dyad.router.sync.v1',
  version: 1,
  schema: z.object({
    /** `delete`: the node is gone and so is all of its state. */
    op: z.enum(['upsert', 'delete']),
    ...Envelope,
    /** Entries the node's state holds at this revision, to check a catch-up against. */
    ipcacheEntries: z.number().int().min(0),
    routes: z.number().int().min(0),
    at: z.iso.datetime(),
  }),
  description:
    "Published after every change of a node's state, once all its entries are stored: the node's revision and entry counts.",
  subjectPattern: `${ROUTER_SUBJECT_ROOT}.node.{node}.sync`,
  stream: ROUTER_STREAM,
});

/** A backend's state: ready ones take new connections, terminating ones only finish theirs. */
export const ServiceBackendState = z.enum(['ready', 'terminating']);

/** One backend of a frontend: an endpoint address of the frontend's family and its target port. */
export const ServiceBackend = z.object({
  address: IpAddress,
  port: z.number().int().min(1).max(65535),
  state: ServiceBackendState,
  /** The node hosting it, from the EndpointSlice. */
  nodeName: NodeName.optional(),
  /** The pod behind it, from the EndpointSlice's targetRef. */
  pod: z.object({ namespace: z.string().min(1), name: z.string().min(1) }).optional(),
});

/** One address, port and protocol a Service answers on, with the backends of that address's family. */
export const ServiceFrontend = z.object({
  family: FamilySchema,
  /** The cluster IP (one entry of `clusterIPs`), or with `type` NodePort this node's address. */
  address: IpAddress,
  /** The Service port, or with `type` NodePort its `nodePort`. */
  port: z.number().int().min(1).max(65535),
  protocol: z.enum(['TCP', 'UDP']),
  /** The Service port's name ('' when it has none). */
  portName: z.string(),
  /** Ready and terminating backends, ordered by address then port. Empty: refuse at once. */
  backends: z.array(ServiceBackend),
  /**
   * `NodePort`: the node's own address of the family (Services of type NodePort and
   * LoadBalancer), reached from beyond the node too. Absent: a cluster IP.
   */
  type: z.enum(['ClusterIP', 'NodePort']).optional(),
  /**
   * NodePort frontends only. With `Local`, `backends` are only this node's; when there are none
   * the node drops new connections (kube-proxy does the same) instead of refusing them.
   */
  externalTrafficPolicy: z.enum(['Cluster', 'Local']).optional(),
});

/**
 * Why part of a Service is not served, as Kubernetes users would look for it: a cluster IP of a
 * family the cluster has disabled, an EndpointSlice address of the wrong family, a named
 * targetPort no backend declares, a protocol the datapath does not balance (SCTP).
 */
export const ServiceProblemCode = z.enum([
  'family-disabled',
  'address-family-mismatch',
  'port-name-unresolved',
  'protocol-unsupported',
]);

export const ServiceProblem = z.object({
  code: ServiceProblemCode,
  message: z.string(),
});

/** One Service as a node's datapath should serve it. */
export const RouterServiceEntry = z.object({
  namespace: z.string().min(1),
  name: z.string().min(1),
  /** Every (cluster IP × port) pair; none for a headless Service. */
  frontends: z.array(ServiceFrontend),
  /** `sessionAffinity: ClientIP`: its timeout; absent for `None`. */
  affinityTimeoutSeconds: z.number().int().min(1).max(86_400).optional(),
  /** With `Local`, the backends above are already only those on this node. */
  internalTrafficPolicy: z.enum(['Cluster', 'Local']),
  problems: z.array(ServiceProblem),
});

export const RouterServiceEvent = defineMessage({
  type: 'io.dyad.router.service.v1',
  version: 1,
  schema: z.discriminatedUnion('op', [
    z.object({ op: z.literal('upsert'), ...Envelope, service: RouterServiceEntry }),
    z.object({
      op: z.literal('delete'),
      ...Envelope,
      namespace: z.string().min(1),
      name: z.string().min(1),
    }),
  ]),
  description:
    "One Service of a node's desired state (frontends per cluster IP with the backends of their family), or its removal.",
  subjectPattern: `${ROUTER_SUBJECT_ROOT}.node.{node}.service.{namespace}.{name}`,
  stream: ROUTER_STREAM,
});

export const RouterStream: StreamSpec = {
  name: ROUTER_STREAM,
  description:
    "Each node's desired ipcache and forwarding entries: last value per entry, removals as tombstones.",
  subjects: [`${ROUTER_SUBJECT_ROOT}.node.>`],
  storage: 'file',
  maxMsgsPerSubject: 1,
  allowMsgTtl: true,
  duplicateWindowMs: 120_000,
};

/** Every subject of one node's state: `dyad.router.v1.node.<node>.>`. */
export function routerNodeFilter(node: string): string {
  return `${ROUTER_SUBJECT_ROOT}.node.${encodeToken(node)}.>`;
}

/** One node's ipcache entries: `dyad.router.v1.node.<node>.ipcache.*`; every node's without one. */
export function routerIpcacheFilter(node?: string): string {
  return `${ROUTER_SUBJECT_ROOT}.node.${node === undefined ? '*' : encodeToken(node)}.ipcache.*`;
}

/** One node's routes: `dyad.router.v1.node.<node>.route.*`. */
export function routerRouteFilter(node: string): string {
  return `${ROUTER_SUBJECT_ROOT}.node.${encodeToken(node)}.route.*`;
}

export function routerIpcacheSubject(node: string, prefix: string): string {
  return `${ROUTER_SUBJECT_ROOT}.node.${encodeToken(node)}.ipcache.${encodeToken(prefix)}`;
}

export function routerRouteSubject(node: string, cidr: string): string {
  return `${ROUTER_SUBJECT_ROOT}.node.${encodeToken(node)}.route.${encodeToken(cidr)}`;
}

export function routerServiceSubject(node: string, namespace: string, name: string): string {
  return `${ROUTER_SUBJECT_ROOT}.node.${encodeToken(node)}.service.${encodeToken(namespace)}.${encodeToken(name)}`;
}

/** Every Service subject of one node. */
export function routerServiceFilter(node: string): string {
  return `${ROUTER_SUBJECT_ROOT}.node.${encodeToken(node)}.service.>`;
}

export function routerSyncSubject(node: string): string {
  return `${ROUTER_SUBJECT_ROOT}.node.${encodeToken(node)}.sync`;
}

export type RouterIpcacheEntryValue = z.output<typeof RouterIpcacheEntry>;
export type RouterRouteEntryValue = z.output<typeof RouterRouteEntry>;
export type RouterServiceEntryValue = z.output<typeof RouterServiceEntry>;
export type ServiceFrontendValue = z.output<typeof ServiceFrontend>;
export type ServiceBackendValue = z.output<typeof ServiceBackend>;
export type ServiceProblemValue = z.output<typeof ServiceProblem>;
