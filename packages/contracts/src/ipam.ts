import { Family } from '@dyad/netaddr';
import { z } from 'zod';
import { defineMessage } from './contract.ts';
import { REPLY_INBOX } from './reply.ts';
import { Cidr4, Cidr6, FamilyAddress, FamilySchema, Ipv4Address, Ipv6Address } from './family.ts';
import type { KvBucketSpec, StreamSpec } from './streams.ts';
import { decodeToken, encodeToken } from './subjects.ts';

/**
 * IPAM: the cluster pool is `services/ipam`'s (node blocks, block sets on request, state in the KV
 * bucket `DYAD_IPAM`, assignments published as a last-value stream); pod addresses are each node
 * agent's, allocated from its node's blocks and recorded in stream DYAD_IPAM_ALLOCATIONS.
 */

export const IPAM_SUBJECT_ROOT = 'dyad.ipam.v1';
export const IPAM_NODES_STREAM = 'DYAD_IPAM_NODES';
export const IPAM_KV_BUCKET = 'DYAD_IPAM';

export const IPAM_ALLOCATIONS_STREAM = 'DYAD_IPAM_ALLOCATIONS';

export const IpamSubject = {
  /** Prefix of the per-node assignment subjects (ipam writes); see ipamNodeSubject. */
  node: `${IPAM_SUBJECT_ROOT}.node`,
  /** Prefix of a node agent's requests for another block set; see ipamGrowSubject. */
  grow: `${IPAM_SUBJECT_ROOT}.grow`,
  /** Prefix of a node agent's allocation records (the agent writes); see ipamAllocSubject. */
  alloc: `${IPAM_SUBJECT_ROOT}.alloc`,
  /** Prefix of a node agent's report of the blocks it holds; see ipamHeldSubject. */
  held: `${IPAM_SUBJECT_ROOT}.held`,
  events: `${IPAM_SUBJECT_ROOT}.events`,
} as const;

/** Core NATS events under `dyad.ipam.v1.events.` (allocations are stored records, not events). */
export const IpamEventKind = {
  exhausted: 'exhausted',
  gc: 'gc',
} as const;
export type IpamEventKind = (typeof IpamEventKind)[keyof typeof IpamEventKind];

/** `dyad.ipam.v1.node.<name>`, the name percent-encoded into one token as in the k8s subjects. */
export function ipamNodeSubject(node: string): string {
  return `${IpamSubject.node}.${encodeToken(node)}`;
}

/** Every node's assignment: `dyad.ipam.v1.node.*`. */
export const IPAM_NODE_FILTER = `${IpamSubject.node}.*`;

export function ipamEventSubject(kind: IpamEventKind): string {
  return `${IpamSubject.events}.${kind}`;
}

/** `dyad.ipam.v1.grow.<node>`: the node's agent asks ipam for another block set (request/reply). */
export function ipamGrowSubject(node: string): string {
  return `${IpamSubject.grow}.${encodeToken(node)}`;
}

/** Every node's grow requests: `dyad.ipam.v1.grow.*`. */
export const IPAM_GROW_FILTER = `${IpamSubject.grow}.*`;

/**
 * `dyad.ipam.v1.alloc.<node>.<containerId>`: the last allocation event of one pod sandbox, written
 * only by that node's agent (one writer per node: the node is in the subject).
 */
export function ipamAllocSubject(node: string, containerId: string): string {
  return `${IpamSubject.alloc}.${encodeToken(node)}.${encodeToken(containerId)}`;
}

/** The inverse of `ipamAllocSubject`; undefined for any other subject. */
export function parseIpamAllocSubject(
  subject: string,
): { node: string; containerId: string } | undefined {
  const root = `${IpamSubject.alloc}.`;
  if (!subject.startsWith(root)) return undefined;
  const t = subject.slice(root.length).split('.');
  const [node, containerId] = t;
  return t.length === 2 && node && containerId
    ? { node: decodeToken(node), containerId: decodeToken(containerId) }
    : undefined;
}

/** Every allocation record of one node (`dyad.ipam.v1.alloc.<node>.*`), or of every node. */
export function ipamAllocFilter(node?: string): string {
  return `${IpamSubject.alloc}.${node === undefined ? '*' : encodeToken(node)}.*`;
}

/** `dyad.ipam.v1.held.<node>`: the blocks a node's agent holds and allocates from. */
export function ipamHeldSubject(node: string): string {
  return `${IpamSubject.held}.${encodeToken(node)}`;
}

/** Every node's held-blocks report: `dyad.ipam.v1.held.*`. */
export const IPAM_HELD_FILTER = `${IpamSubject.held}.*`;

/**
 * Codes of the typed error replies (`io.dyad.bus.error.v1`) ipam answers a grow request with;
 * besides these the bus's own `bad-request` (the request did not decode, or its node is not the
 * subject's) and `internal`.
 */
export const IpamErrorCode = {
  /** No such node: never announced by kube-bridge and no blocks held, or deleted. */
  unknownNode: 'unknown-node',
  /** The cluster pool of a family has no block left for another set; nothing was claimed. */
  exhausted: 'exhausted',
  /**
   * The state store did not answer, or ipam is waiting for agents' held reports after finding its
   * bucket empty; the request changed nothing a repeat cannot settle. Retry.
   */
  unavailable: 'unavailable',
} as const;
export type IpamErrorCode = (typeof IpamErrorCode)[keyof typeof IpamErrorCode];

const DNS_LABEL = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
/** A Kubernetes object name (DNS-1123 subdomain), as Node and Pod names are. */
export const K8sName = z
  .string()
  .max(253)
  .regex(new RegExp(`^${DNS_LABEL}(\\.${DNS_LABEL})*$`), 'must be a DNS-1123 subdomain');
/** A namespace name (DNS-1123 label). */
export const K8sNamespace = z
  .string()
  .max(63)
  .regex(new RegExp(`^${DNS_LABEL}$`), 'must be a DNS-1123 label');
/** The CNI container id: letters, digits, '_', '.', '-' (CNI spec), starting with a letter or digit. */
export const ContainerId = z
  .string()
  .max(256)
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'must be letters, digits, "_", "." or "-"');
export const PodUid = z.string().min(1).max(128);

const Owner = {
  node: K8sName,
  namespace: K8sNamespace,
  pod: K8sName,
  podUid: PodUid,
  containerId: ContainerId,
};

const ReleasedOwner = z.object({
  ...Owner,
  addresses: z.array(FamilyAddress),
});

/** A node's block of one family and its router address; both of that family. */
export const NodeBlock = z.discriminatedUnion('family', [
  z.object({ family: z.literal(Family.IPv4), cidr: Cidr4, gateway: Ipv4Address }),
  z.object({ family: z.literal(Family.IPv6), cidr: Cidr6, gateway: Ipv6Address }),
]);

export const IpamNodeEvent = defineMessage({
  type: 'io.dyad.ipam.node.v1',
  version: 1,
  schema: z.object({
    op: z.enum(['upsert', 'delete']),
    node: K8sName,
    /**
     * The node's pod CIDRs: one set of one block per enabled family, then more sets as the node's
     * agent asks for them; set by set, and in the cluster's family order within a set (the k-th
     * block of a family belongs to set k). On delete, the blocks returned to the pool.
     */
    blocks: z.array(NodeBlock),
  }),
  description:
    "A node's pod CIDRs per family (each with its gateway address), assigned for the node's life, more sets as its agent asks; a delete returns them to the pool.",
  subjectPattern: `${IpamSubject.node}.{name}`,
  stream: IPAM_NODES_STREAM,
});

const ALLOC_RETENTION =
  'Stored in stream DYAD_IPAM_ALLOCATIONS, last message per sandbox: an allocation stays while the sandbox holds it, a release is kept 24 h (a Nats-TTL tombstone).';

export const AddressesAllocated = defineMessage({
  type: 'io.dyad.ipam.allocated.v1',
  version: 1,
  schema: ReleasedOwner.extend({
    allocatedAt: z.iso.datetime(),
    /** The node slot the addresses come from (offset 2 + slot within the node's block sets). */
    slot: z.number().int().min(0).optional(),
  }),
  description: `A node agent gave addresses to a pod sandbox from its node's blocks (not sent again for a repeated ADD). ${ALLOC_RETENTION}`,
  subjectPattern: `${IpamSubject.alloc}.{node}.{containerId}`,
  stream: IPAM_ALLOCATIONS_STREAM,
});

export const ReleaseReason = z.enum(['request', 'pod-deleted', 'node-deleted']);

export const AddressesReleased = defineMessage({
  type: 'io.dyad.ipam.released.v1',
  version: 1,
  schema: ReleasedOwner.extend({ reason: ReleaseReason }),
  description: `A pod sandbox's addresses returned to its node's blocks: \`request\` for a CNI DEL or GC, \`node-deleted\` when the node's blocks returned to the pool. ${ALLOC_RETENTION}`,
  subjectPattern: `${IpamSubject.alloc}.{node}.{containerId}`,
  stream: IPAM_ALLOCATIONS_STREAM,
});

/** `dyad.ipam.v1.events.exhausted.<node>`. */
export function ipamExhaustedSubject(node: string): string {
  return `${ipamEventSubject(IpamEventKind.exhausted)}.${encodeToken(node)}`;
}

/** Every node's exhaustion events: `dyad.ipam.v1.events.exhausted.*`. */
export const IPAM_EXHAUSTED_FILTER = `${ipamEventSubject(IpamEventKind.exhausted)}.*`;

export const AddressesExhausted = defineMessage({
  type: 'io.dyad.ipam.exhausted.v1',
  version: 1,
  schema: z.object({
    node: K8sName,
    family: FamilySchema,
    /** `node-block`: the node's blocks are full; `cluster-pool`: no block left for the node. */
    scope: z.enum(['node-block', 'cluster-pool']),
    message: z.string(),
  }),
  description:
    "An allocation failed because a node's blocks (published by its agent) or the cluster pool of a family (published by ipam) is full.",
  subjectPattern: `${IpamSubject.events}.exhausted.{node}`,
});

export const GrowRequest = defineMessage({
  type: 'io.dyad.ipam.grow.v1',
  version: 1,
  schema: z.object({
    node: K8sName,
    /**
     * How many block sets the agent holds now. ipam adds a set only when the node has no more
     * than this many, so a repeated request (a lost reply, a restart) never adds two.
     */
    sets: z.number().int().min(1),
  }),
  description:
    "A node agent whose blocks are nearly full asks for one more block per enabled family (a block set); the reply lists all of the node's blocks.",
  subjectPattern: `${IpamSubject.grow}.{node}`,
});

export const GrowReply = defineMessage({
  type: 'io.dyad.ipam.grown.v1',
  version: 1,
  schema: z.object({
    node: K8sName,
    /** Every block of the node: set by set, and in the cluster's family order within a set. */
    blocks: z.array(NodeBlock).min(1),
  }),
  description:
    "The reply to a grow request: the node's blocks, with the new set (also published on the node's assignment subject).",
  subjectPattern: REPLY_INBOX,
});

export const NodeBlocksHeld = defineMessage({
  type: 'io.dyad.ipam.held.v1',
  version: 1,
  schema: z.object({
    node: K8sName,
    /** The blocks the agent allocates from, as in IpamNodeEvent: set by set, family order. */
    blocks: z.array(NodeBlock),
    at: z.iso.datetime(),
  }),
  description:
    "A node agent's own word on the blocks it holds and allocates from, last value per node in stream DYAD_IPAM_ALLOCATIONS: ipam rebuilds its assignments from it after losing its bucket, and never gives a block held here to another node.",
  subjectPattern: `${IpamSubject.held}.{node}`,
  stream: IPAM_ALLOCATIONS_STREAM,
});

export const GcCompleted = defineMessage({
  // v2: ipam no longer holds pod addresses, so v1's releasedOwners is gone.
  type: 'io.dyad.ipam.gc.v2',
  version: 2,
  schema: z.object({
    /** Node records of deleted nodes removed, their blocks returned to the pool. */
    releasedNodes: z.number().int().min(0),
    /** Block claims no node record used (a replica died between its writes), removed. */
    releasedOrphanBlocks: z.number().int().min(0),
    scannedNodes: z.number().int().min(0),
    durationMs: z.number().min(0),
  }),
  description: 'A garbage-collection pass of one ipam replica that released something.',
  subjectPattern: ipamEventSubject(IpamEventKind.gc),
});

export const IpamNodesStream: StreamSpec = {
  name: IPAM_NODES_STREAM,
  description:
    "Each node's pod CIDRs as ipam assigned them: last value per node, deletes as tombstones.",
  subjects: [`${IpamSubject.node}.>`],
  storage: 'file',
  maxMsgsPerSubject: 1,
  allowMsgTtl: true,
  duplicateWindowMs: 120_000,
};

export const IpamAllocationsStream: StreamSpec = {
  name: IPAM_ALLOCATIONS_STREAM,
  description:
    "Node agents' allocation records: the last allocated or released event per pod sandbox (releases expire after 24 h) and each node's held blocks.",
  subjects: [`${IpamSubject.alloc}.>`, `${IpamSubject.held}.>`],
  storage: 'file',
  maxMsgsPerSubject: 1,
  allowMsgTtl: true,
  duplicateWindowMs: 120_000,
};

export const IpamKvBucket: KvBucketSpec = {
  bucket: IPAM_KV_BUCKET,
  description:
    "IPAM state: cluster config, block claims, each node's block sets (and, until each node's agent adopts them, the legacy pod slot and owner records).",
  history: 1,
  storage: 'file',
  // A deleted node's keys and the legacy keys are purged with an expiring marker: with delete
  // markers the bucket would keep one message per key ever written.
  allowMsgTtl: true,
};

/**
 * Keys of the DYAD_IPAM bucket. Node names are DNS subdomains, valid key tokens as they are.
 *
 * - `config`: the cluster IPAM configuration the replicas run with.
 * - `block.<family>.<cidr>`: a node block's claim (`create`: exactly one node gets a block).
 * - `node.<name>`: the node's block sets (revision-checked update).
 *
 * Legacy, from when ipam allocated pod addresses itself; nothing writes them any more:
 * - `slot.<node>.<n>`: pod slot n of a node (IpamSlotRecord). A node agent upgraded in place reads
 *   its node's slots once to adopt the addresses in use; ipam purges them, and the node's
 *   `owner.<node>.*` records, once it has seen that node's NodeBlocksHeld report, and not before.
 * - `owner.<node>.<containerId>`: which slot a sandbox held; purged with the slots.
 * - `sync.<id>`: a replica's watch marker; purged once stale.
 */
export const IpamKey = {
  config: 'config',
  node: (name: string): string => `node.${name}`,
  nodePrefix: 'node.',
  /** Every node record. */
  nodeFilter: 'node.>',
  block: (family: Family, cidr: string): string =>
    `block.${family}.${cidr.replace(/:/g, '-').replace('/', '_')}`,
  blockPrefix: 'block.',
  /** Every block claim. */
  blockFilter: 'block.>',
  /** Legacy (see above). */
  slot: (node: string, slot: number): string => `slot.${node}.${slot}`,
  /** Legacy (see above). */
  slotPrefix: 'slot.',
  /** Legacy (see above): every slot of one node, or of every node. */
  slotFilter: (node?: string): string => (node === undefined ? 'slot.>' : `slot.${node}.*`),
  /** Legacy (see above). */
  ownerPrefix: 'owner.',
  /** Legacy (see above): which slot a sandbox held (a container id's dots written '='). */
  owner: (node: string, containerId: string): string =>
    `owner.${node}.${containerId.replace(/\./g, '=')}`,
  /** Legacy (see above): every owner record of one node, or of every node. */
  ownerFilter: (node?: string): string => (node === undefined ? 'owner.>' : `owner.${node}.*`),
  /** Legacy (see above). */
  syncPrefix: 'sync.',
  /** Legacy (see above): a replica's watch marker. */
  sync: (id: string): string => `sync.${id}`,
  /** Legacy (see above): every watch marker. */
  syncFilter: 'sync.>',
} as const;

const BlockRef = z.object({ cidr: z.string(), gateway: z.string() });
/** One block set: one block per enabled family. */
const BlockSet = z.object({ IPv4: BlockRef.optional(), IPv6: BlockRef.optional() });

/** A node record as ipam wrote it before block sets: one block per family. Read, never written. */
const IpamNodeRecordV1 = z.object({
  v: z.literal(1),
  name: z.string(),
  uid: z.string(),
  blocks: BlockSet,
  createdAt: z.number(),
});

const IpamNodeRecordV2 = z.object({
  v: z.literal(2),
  name: z.string(),
  uid: z.string(),
  /**
   * The node's block sets in the order they were given, set 0 first; each has one block per
   * enabled family (a family enabled later is added to every set at once, or to none).
   */
  sets: z.array(BlockSet),
  /** Epoch ms; tells one incarnation of a node name from the next. */
  createdAt: z.number(),
});

/**
 * The value under `node.<name>`: the node's block sets. A v1 record (one block per family, written
 * before block sets) reads as a v2 record with that one set; ipam writes v2 only.
 */
export const IpamNodeRecord = z.union([
  IpamNodeRecordV2,
  IpamNodeRecordV1.transform((r) => ({
    v: 2 as const,
    name: r.name,
    uid: r.uid,
    sets: r.blocks.IPv4 === undefined && r.blocks.IPv6 === undefined ? [] : [r.blocks],
    createdAt: r.createdAt,
  })),
]);

/**
 * Legacy: the value under `slot.<node>.<n>`, the sandbox that held the slot and its addresses,
 * for a node agent upgraded in place to adopt (see IpamKey).
 */
export const IpamSlotRecord = z.object({
  containerId: z.string(),
  namespace: z.string(),
  pod: z.string(),
  podUid: z.string(),
  /** The slot's address per family the sandbox asked for (derived from the slot; kept to read). */
  ips: z.object({ IPv4: z.string().optional(), IPv6: z.string().optional() }),
  /** Epoch ms of the allocation. */
  at: z.number(),
  /** Random, one per claim written. */
  claim: z.string().max(64).optional(),
});

/** The value under `block.<family>.<cidr>`: which node claimed the block, and when. */
export const IpamBlockClaim = z.object({ node: z.string(), at: z.number() });

/** The value under `config`: what the last replica started with. */
export const IpamClusterConfig = z.object({
  v: z.literal(1),
  /** In family order, primary first. */
  families: z.array(
    z.object({ family: FamilySchema, cidrs: z.array(z.string()), maskSize: z.number().int() }),
  ),
});

export type IpamSlotRecordValue = z.output<typeof IpamSlotRecord>;
export type IpamNodeRecordValue = z.output<typeof IpamNodeRecord>;
export type IpamBlockClaimValue = z.output<typeof IpamBlockClaim>;
export type IpamClusterConfigValue = z.output<typeof IpamClusterConfig>;
export type NodeBlockValue = z.output<typeof NodeBlock>;
