import { formatPrefix, parsePrefixLenient } from '@dyad/netaddr';
import { EndpointFlags, IpcacheFlags, PolicyAction, policyKeys } from '@dyad/libbpf-ts';
import type {
  EndpointInfo,
  EndpointKey,
  IpcacheInfo,
  IpcacheKey,
  PolicyKey,
  PolicyValue,
} from '@dyad/libbpf-ts';
import type { Endpoint } from '../endpoint.ts';

/**
 * What every map of the node should hold, as a pure function of the node's endpoints, the
 * router's ipcache entries for the node and the pods' policies. No kernel, no NATS: the
 * reconciler (reconciler.ts) applies it, and the unit tests check it directly.
 */

/** The policy of one pod's endpoints, as the policy service gives it. */
export interface PodPolicy {
  readonly enforceIngress: boolean;
  readonly enforceEgress: boolean;
  readonly rules: ReadonlyArray<{
    readonly identity: number;
    readonly direction: 'ingress' | 'egress';
    readonly proto?: number;
    readonly ports?: number | { readonly from: number; readonly to: number };
    readonly action: 'allow' | 'deny';
  }>;
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

/** Pod policies by `namespace/name`; until `synced`, endpoints keep the flags they had. */
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
}

/** Identity and policy flags of an endpoint, as its inputs call for. */
export interface EndpointView {
  readonly identity: number;
  readonly flags: number;
}

export interface DesiredMaps {
  readonly endpoints: ReadonlyArray<readonly [EndpointKey, EndpointInfo]>;
  readonly ipcache: ReadonlyArray<readonly [IpcacheKey, IpcacheInfo]>;
  readonly policy: ReadonlyArray<readonly [PolicyKey, PolicyValue]>;
  /** True when `ipcache` is the whole map (the router has spoken); else only local entries. */
  readonly ipcacheComplete: boolean;
  /** Every endpoint's view, by endpoint key (containerId/ifName). */
  readonly views: ReadonlyMap<string, EndpointView>;
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
  if (!inputs.policy.synced) return { identity, flags: ep.flags };
  const pol = inputs.policy.policies.get(podKey(ep.pod));
  const flags =
    (pol?.enforceIngress ? EndpointFlags.ENFORCE_INGRESS : 0) |
    (pol?.enforceEgress ? EndpointFlags.ENFORCE_EGRESS : 0);
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

/** The policy map entries of one endpoint; none before the first policy snapshot. */
export function policyEntries(ep: Endpoint, policy: PolicyState): Array<[PolicyKey, PolicyValue]> {
  const pol = policy.policies.get(podKey(ep.pod));
  if (!pol) return [];
  const out: Array<[PolicyKey, PolicyValue]> = [];
  pol.rules.forEach((r, i) => {
    const keys = policyKeys({
      endpointId: ep.endpointId,
      identity: r.identity,
      direction: r.direction,
      ...(r.proto !== undefined ? { proto: r.proto } : {}),
      ...(r.ports !== undefined ? { ports: r.ports } : {}),
    });
    const value = {
      action: r.action === 'deny' ? PolicyAction.DENY : PolicyAction.ALLOW,
      ruleId: i + 1,
    };
    for (const k of keys) out.push([k, value]);
  });
  return out;
}

/** The whole desired content of the three maps. */
export function desiredMaps(inputs: DesiredInputs): DesiredMaps {
  const endpoints: Array<[EndpointKey, EndpointInfo]> = [];
  const policy: Array<[PolicyKey, PolicyValue]> = [];
  const views = new Map<string, EndpointView>();
  // local endpoints win over the router's word for their own addresses
  const ipcache = new Map<string, [IpcacheKey, IpcacheInfo]>();
  for (const [prefix, info] of inputs.router.entries) ipcache.set(prefix, [{ prefix }, info]);
  for (const ep of inputs.endpoints) {
    const view = endpointView(ep, inputs);
    views.set(`${ep.containerId}/${ep.ifName}`, view);
    endpoints.push(...endpointEntries(ep, view));
    for (const e of localIpcacheEntries(ep, view, inputs.nodeId)) ipcache.set(e[0].prefix, e);
    if (inputs.policy.synced) policy.push(...policyEntries(ep, inputs.policy));
  }
  return {
    endpoints,
    ipcache: [...ipcache.values()],
    policy,
    ipcacheComplete: inputs.router.synced,
    views,
  };
}
