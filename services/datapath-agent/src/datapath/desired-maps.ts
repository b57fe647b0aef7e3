import { formatPrefix, parsePrefixLenient } from '@dyad/netaddr';
import type { DirectionPolicyValue, PolicyPortsValue } from '@dyad/contracts';
import {
  EndpointFlags,
  IpcacheFlags,
  POLICY_CLASS_BASE,
  PolicyAction,
  Proto,
  policyKeys,
} from '@dyad/libbpf-ts';
import type {
  EndpointInfo,
  EndpointKey,
  IpcacheInfo,
  IpcacheKey,
  PolicyCidrKey,
  PolicyCidrValue,
  PolicyDirection,
  PolicyKey,
  PolicyValue,
} from '@dyad/libbpf-ts';
import type { Endpoint } from '../endpoint.ts';
import type { ServiceState } from './desired-lb.ts';

/**
 * What every map of the node should hold, as a pure function of the node's endpoints, the
 * router's ipcache entries for the node and the pods' policies. No kernel, no NATS: the
 * reconciler (reconciler.ts) applies it, and the unit tests check it directly.
 */

/** The policy of one pod's endpoints, as the policy service gives it (io.dyad.node.policy.v2). */
export interface PodPolicy {
  readonly ingress: DirectionPolicyValue;
  readonly egress: DirectionPolicyValue;
}

/**
 * The router's entries for this node by canonical prefix. Until `synced` (its first snapshot)
 * the agent has no word from the router: endpoints keep the identity they had, and ipcache
 * entries that are not a local endpoint's are left alone.
 */
export interface RouterState {
  readonly synced: boolean;
  readonly entries: ReadonlyMap<string, IpcacheInfo>;
}

/**
 * Pod policies by `namespace/name`. An endpoint whose pod has no policy here (before `synced`,
 * or after it without a message, or whose newest message was refused) is unknown: it keeps the
 * flags and entries the kernel holds for it, so nothing opens on missing word. A new endpoint
 * starts with none.
 */
export interface PolicyState {
  readonly synced: boolean;
  readonly policies: ReadonlyMap<string, PodPolicy>;
}

export interface DesiredInputs {
  /** The node's endpoints that are complete (phase ready). */
  readonly endpoints: readonly Endpoint[];
  readonly router: RouterState;
  readonly policy: PolicyState;
  readonly nodeId: number;
  /** Identity of an endpoint the router has not named. */
  readonly initIdentity: number;
  /** The router's Services for this node; absent or unsynced leaves the LB maps alone. */
  readonly services?: ServiceState;
}

/** Identity and policy flags of an endpoint, as its inputs call for. */
export interface EndpointView {
  readonly identity: number;
  readonly flags: number;
}

export interface DesiredMaps {
  readonly endpoints: ReadonlyArray<readonly [EndpointKey, EndpointInfo]>;
  readonly ipcache: DesiredIpcache;
  readonly policy: ReadonlyArray<readonly [PolicyKey, PolicyValue]>;
  readonly policyCidr: ReadonlyArray<readonly [PolicyCidrKey, PolicyCidrValue]>;
  /** Endpoint ids whose policy is known: their `policy`/`policyCidr` entries are all they hold. */
  readonly policyKnown: ReadonlySet<number>;
  /** True when `ipcache` is the whole map (the router has spoken); else only local entries. */
  readonly ipcacheComplete: boolean;
  /** Every endpoint's view, by endpoint key (containerId/ifName). */
  readonly views: ReadonlyMap<string, EndpointView>;
}

/**
 * The desired ipcache, which is cluster-sized: its entries are computed as it is iterated (from
 * the inputs as they are then), never held as one object per entry.
 */
export interface DesiredIpcache extends Iterable<readonly [IpcacheKey, IpcacheInfo]> {
  /** Whether the prefix (canonical) is desired. */
  has(prefix: string): boolean;
}

/** One spelling per prefix, so two spellings of one prefix are one key here too. */
export function canonicalPrefix(prefix: string): string {
  return formatPrefix(parsePrefixLenient(prefix));
}

export function podKey(p: { readonly namespace: string; readonly name: string }): string {
  return `${p.namespace}/${p.name}`;
}

/** The endpoint's host prefixes (/32, /128), canonical. */
export function prefixesOf(ep: Endpoint): string[] {
  const out: string[] = [];
  if (ep.ipv4) out.push(canonicalPrefix(`${ep.ipv4.address}/32`));
  if (ep.ipv6) out.push(canonicalPrefix(`${ep.ipv6.address}/128`));
  return out;
}

export function addressesOf(ep: Endpoint): string[] {
  const out: string[] = [];
  if (ep.ipv4) out.push(ep.ipv4.address);
  if (ep.ipv6) out.push(ep.ipv6.address);
  return out;
}

/** The endpoint's pod policy, when known (see PolicyState). */
export function knownPolicy(ep: Endpoint, policy: PolicyState): PodPolicy | undefined {
  return policy.synced ? policy.policies.get(podKey(ep.pod)) : undefined;
}

/**
 * The router's entry for one of the endpoint's addresses names its identity. Before the first
 * router or policy snapshot the endpoint keeps what it had: a restarted agent must not rewrite
 * healthy entries on a guess, nor open a pod whose policy it has not heard yet.
 */
export function endpointView(ep: Endpoint, inputs: DesiredInputs): EndpointView {
  let identity = ep.identity;
  if (inputs.router.synced) {
    identity = inputs.initIdentity;
    for (const p of prefixesOf(ep)) {
      const r = inputs.router.entries.get(p);
      if (r) {
        identity = r.identity;
        break;
      }
    }
  }
  const pol = knownPolicy(ep, inputs.policy);
  if (!pol) return { identity, flags: ep.flags };
  const flags =
    (pol.ingress.enforce ? EndpointFlags.ENFORCE_INGRESS : 0) |
    (pol.egress.enforce ? EndpointFlags.ENFORCE_EGRESS : 0);
  return { identity, flags };
}

export function endpointEntries(
  ep: Endpoint,
  view: EndpointView,
): Array<[EndpointKey, EndpointInfo]> {
  const info: EndpointInfo = {
    ifindex: ep.hostIfindex,
    endpointId: ep.endpointId,
    identity: view.identity,
    flags: view.flags,
    mac: ep.mac,
    nodeMac: ep.hostMac,
  };
  return addressesOf(ep).map((address) => [{ address }, info]);
}

export function localIpcacheEntries(
  ep: Endpoint,
  view: EndpointView,
  nodeId: number,
): Array<[IpcacheKey, IpcacheInfo]> {
  const info: IpcacheInfo = { identity: view.identity, nodeId, flags: IpcacheFlags.LOCAL_NODE };
  return prefixesOf(ep).map((prefix) => [{ prefix }, info]);
}

const PROTO_NUMBER = { TCP: Proto.TCP, UDP: Proto.UDP, SCTP: Proto.SCTP } as const;
const ALLOW: PolicyValue = { action: PolicyAction.ALLOW, ruleId: 0 };

/** One allow as a policyKeys() rule part: protocol absent = every protocol, ICMP included. */
function ruleOf(a: PolicyPortsValue): { proto?: number; ports?: { from: number; to: number } } {
  if (a.protocol === undefined) return {};
  return { proto: PROTO_NUMBER[a.protocol], ...(a.ports ? { ports: a.ports } : {}) };
}

/** One spelling per allow-set, so equal sets are one class. */
function allowSetKey(allow: readonly PolicyPortsValue[]): string {
  const parts = allow.map((a) => {
    const r = ruleOf(a);
    return `${r.proto ?? 0}:${r.ports ? `${r.ports.from}-${r.ports.to}` : '*'}`;
  });
  return [...new Set(parts)].sort().join(',');
}

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

const CLASS_SPAN = 0x1_0000_0000 - POLICY_CLASS_BASE;

/**
 * Class ids of one endpoint and direction, by allow-set. An id is taken from the set's content
 * (a hash into the class range), not from its position, so a class keeps its meaning across
 * updates: when a block moves to another class, the old class's entries are either still right
 * or already gone, and the block is briefly dropped, never briefly opened by a renumbered class.
 * Hash collisions probe upwards in the sets' sorted order, so the result stays a pure function.
 */
export function classIds(allowSets: Iterable<string>): Map<string, number> {
  const out = new Map<string, number>();
  const taken = new Set<number>();
  for (const set of [...new Set(allowSets)].sort()) {
    let slot = fnv1a(set) % CLASS_SPAN;
    while (taken.has(slot)) slot = (slot + 1) % CLASS_SPAN;
    taken.add(slot);
    out.set(set, POLICY_CLASS_BASE + slot);
  }
  return out;
}

export interface DirectionEntries {
  readonly policy: Array<[PolicyKey, PolicyValue]>;
  readonly cidr: Array<[PolicyCidrKey, PolicyCidrValue]>;
}

/**
 * The map entries of one endpoint's policy in one direction: none when the direction is not
 * enforced (the flag alone opens it). Peers by identity become dy_policy entries (identity 0:
 * any peer); each CIDR entry of either family points at the class of its allow-set, whose
 * protocols and ports are dy_policy entries with the class id as identity. An `except` (empty
 * allow) gets a class with no entries. Families never mix: an IPv4 block has no IPv6 entry, so
 * a pod isolated by IPv4 blocks only gets no IPv6 traffic in that direction.
 */
export function directionEntries(
  endpointId: number,
  direction: PolicyDirection,
  d: DirectionPolicyValue,
): DirectionEntries {
  const policy = new Map<string, [PolicyKey, PolicyValue]>();
  const cidr: Array<[PolicyCidrKey, PolicyCidrValue]> = [];
  if (!d.enforce) return { policy: [], cidr };
  const add = (identity: number, allow: readonly PolicyPortsValue[]) => {
    for (const a of allow)
      for (const k of policyKeys({ endpointId, identity, direction, ...ruleOf(a) }))
        policy.set(`${k.identity}/${k.proto}/${k.port}/${k.portPrefixLen}`, [k, ALLOW]);
  };
  for (const g of d.peers) for (const identity of g.identities) add(identity, g.allow);
  const blocks = [...d.cidrs.IPv4, ...d.cidrs.IPv6];
  const sets = new Map(blocks.map((b) => [allowSetKey(b.allow), b.allow] as const));
  const ids = classIds(sets.keys());
  for (const [set, allow] of sets) add(ids.get(set) as number, allow);
  for (const b of blocks)
    cidr.push([
      { endpointId, direction, prefix: canonicalPrefix(b.prefix) },
      { classId: ids.get(allowSetKey(b.allow)) as number },
    ]);
  return { policy: [...policy.values()], cidr };
}

/** Both directions' entries of one endpoint whose policy is known; none otherwise. */
export function policyEntries(ep: Endpoint, policy: PolicyState): DirectionEntries {
  const pol = knownPolicy(ep, policy);
  if (!pol) return { policy: [], cidr: [] };
  const ingress = directionEntries(ep.endpointId, 'ingress', pol.ingress);
  const egress = directionEntries(ep.endpointId, 'egress', pol.egress);
  return {
    policy: [...ingress.policy, ...egress.policy],
    cidr: [...ingress.cidr, ...egress.cidr],
  };
}

/** The whole desired content of the maps the agent writes. */
export function desiredMaps(inputs: DesiredInputs): DesiredMaps {
  const endpoints: Array<[EndpointKey, EndpointInfo]> = [];
  const policy: Array<[PolicyKey, PolicyValue]> = [];
  const policyCidr: Array<[PolicyCidrKey, PolicyCidrValue]> = [];
  const policyKnown = new Set<number>();
  const views = new Map<string, EndpointView>();
  // local endpoints win over the router's word for their own addresses
  const local = new Map<string, [IpcacheKey, IpcacheInfo]>();
  const router = inputs.router.entries;
  for (const ep of inputs.endpoints) {
    const view = endpointView(ep, inputs);
    views.set(`${ep.containerId}/${ep.ifName}`, view);
    endpoints.push(...endpointEntries(ep, view));
    for (const e of localIpcacheEntries(ep, view, inputs.nodeId)) local.set(e[0].prefix, e);
    if (knownPolicy(ep, inputs.policy)) {
      policyKnown.add(ep.endpointId);
      const e = policyEntries(ep, inputs.policy);
      policy.push(...e.policy);
      policyCidr.push(...e.cidr);
    }
  }
  return {
    endpoints,
    ipcache: {
      *[Symbol.iterator]() {
        for (const [prefix, info] of router) if (!local.has(prefix)) yield [{ prefix }, info];
        yield* local.values();
      },
      has: (prefix) => local.has(prefix) || router.has(prefix),
    },
    policy,
    policyCidr,
    policyKnown,
    ipcacheComplete: inputs.router.synced,
    views,
  };
}
