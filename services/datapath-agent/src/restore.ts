import type { Family } from '@dyad/netaddr';
import type { Bus } from '@dyad/bus';
import {
  AGENT_STREAM,
  AddressesAllocated,
  EndpointReport,
  IPAM_ALLOCATIONS_STREAM,
  IPAM_KV_BUCKET,
  IPAM_NODES_STREAM,
  IpamKey,
  IpamNodeEvent,
  IpamSlotRecord,
  agentEndpointFilter,
  ipamAllocFilter,
  ipamNodeSubject,
} from '@dyad/contracts';
import type { NodeBlockValue } from '@dyad/contracts';
import { EndpointFlags } from '@dyad/libbpf-ts';
import { maskBytes, parsePrefixLenient, tryParseIp } from '@dyad/netaddr';
import type { NodeDatapath } from './datapath/node.ts';
import type { AgentLogger } from './endpoint-manager.ts';
import { NodeAllocator } from './ipam/allocator.ts';
import { slotOfAddress } from './ipam/blocks.ts';
import type { StoredEndpoint } from './state.ts';
import { loadState } from './state.ts';

/** A sandbox that held addresses before this allocator knew of it. */
export interface AdoptedHolder {
  readonly containerId: string;
  readonly pod: { readonly namespace: string; readonly name: string; readonly uid?: string };
  readonly addresses: readonly string[];
  readonly allocatedAt?: string;
}

/**
 * How the agent starts. `state`: its own file; `legacy`: the file of an agent from before
 * node-local allocation, whose addresses are adopted once the node's blocks are known; `rebuild`:
 * no usable file but the kernel holds endpoints (the file was lost), so allocations and endpoints
 * are rebuilt from the kernel and the node's records on NATS before anything is served; `fresh`:
 * nothing anywhere.
 */
export type StartMode = 'state' | 'legacy' | 'rebuild' | 'fresh';

export interface StartState {
  readonly mode: StartMode;
  readonly allocator: NodeAllocator;
  readonly endpoints: readonly StoredEndpoint[];
  readonly objectHash?: string;
  /** Legacy mode: the holders to adopt when the blocks arrive. */
  readonly adopt: readonly AdoptedHolder[];
}

export function prepareRestore(o: {
  readonly stateFile: string;
  readonly node: string;
  readonly datapath: NodeDatapath;
  readonly logger: AgentLogger;
}): StartState {
  const loaded = loadState(o.stateFile, o.node, (reason, movedTo) =>
    o.logger.error(
      { reason, movedTo },
      'state file unreadable; rebuilding from the kernel and NATS',
    ),
  );
  if (loaded.kind === 'state') {
    const allocator = NodeAllocator.fromJSON(loaded.state.ipam);
    return {
      mode: 'state',
      allocator,
      endpoints: loaded.state.endpoints,
      ...(loaded.state.objectHash ? { objectHash: loaded.state.objectHash } : {}),
      // an endpoint whose addresses the allocator does not hold (the file was written between
      // a legacy start and its adoption): taken as soon as the blocks are known
      adopt: loaded.state.endpoints
        .filter((e) => e.phase === 'ready' && allocator.holder(e.containerId) === undefined)
        .map(heldBy),
    };
  }
  if (loaded.kind === 'legacy') {
    // a `releasing` endpoint's kernel state was gone already; the old IPAM's slot goes with ipam
    const endpoints = loaded.state.endpoints.flatMap((e) =>
      e.phase === 'releasing' ? [] : [{ ...e, phase: e.phase }],
    );
    return {
      mode: 'legacy',
      allocator: new NodeAllocator(),
      endpoints,
      ...(loaded.state.objectHash ? { objectHash: loaded.state.objectHash } : {}),
      // an `adding` one is rolled back by the restore: nothing of it to keep
      adopt: endpoints.filter((e) => e.phase === 'ready').map(heldBy),
    };
  }
  const kernelHasEndpoints = o.datapath.endpoints.size > 0;
  return {
    mode: kernelHasEndpoints ? 'rebuild' : 'fresh',
    allocator: new NodeAllocator(),
    endpoints: [],
    adopt: [],
  };
}

/** What an endpoint holds, as a holder to adopt. */
function heldBy(e: StoredEndpoint): AdoptedHolder {
  return {
    containerId: e.containerId,
    pod: e.pod,
    addresses: [e.ipv4?.address, e.ipv6?.address].filter((a): a is string => a !== undefined),
    allocatedAt: e.createdAt,
  };
}

/**
 * Takes each holder's slot in the allocator (which has its blocks by now). A slot another
 * container holds is a conflict, logged and left alone: neither container loses its address.
 */
export function adoptHolders(
  allocator: NodeAllocator,
  holders: readonly AdoptedHolder[],
  logger: AgentLogger,
): { adopted: string[]; conflicts: number } {
  const adopted: string[] = [];
  let conflicts = 0;
  const blocks = allocator.blocks();
  for (const h of holders) {
    const slots = new Set(h.addresses.map((a) => slotOfAddress(blocks, a)));
    const [slot] = slots;
    if (slots.size !== 1 || slot === undefined) {
      logger.error({ holder: h }, 'addresses to adopt are not one slot of the node blocks');
      conflicts++;
      continue;
    }
    const families = h.addresses.map((a): Family => (a.includes(':') ? 'IPv6' : 'IPv4'));
    const r = allocator.reserve({
      containerId: h.containerId,
      pod: h.pod,
      slot,
      families,
      ...(h.allocatedAt ? { allocatedAt: h.allocatedAt } : {}),
    });
    if (r.ok) {
      if (r.fresh) adopted.push(h.containerId);
    } else {
      logger.error({ holder: h, reason: r.reason, message: r.message }, 'address not adopted');
      conflicts++;
    }
  }
  return { adopted, conflicts };
}

/** The legacy IPAM's slots of this node (`slot.<node>.<n>` in DYAD_IPAM), to adopt. */
export async function legacySlots(bus: Bus, node: string): Promise<AdoptedHolder[]> {
  const out: AdoptedHolder[] = [];
  let values;
  try {
    values = await (await bus.kv(IPAM_KV_BUCKET)).values(IpamKey.slotFilter(node));
  } catch {
    return out; // no bucket: nothing to adopt
  }
  for (const v of values) {
    const r = IpamSlotRecord.safeParse(v.value);
    if (!r.success) continue;
    out.push({
      containerId: r.data.containerId,
      pod: { namespace: r.data.namespace, name: r.data.pod, uid: r.data.podUid },
      addresses: [r.data.ips.IPv4, r.data.ips.IPv6].filter((a): a is string => a !== undefined),
      allocatedAt: new Date(r.data.at).toISOString(),
    });
  }
  return out;
}

/** What the node's own records on NATS and the kernel say after the state file was lost. */
export interface RebuildSource {
  readonly blocks: readonly NodeBlockValue[];
  readonly holders: readonly AdoptedHolder[];
  /** Endpoints as last reported, with the netns they were made in. */
  readonly endpoints: readonly StoredEndpoint[];
}

/**
 * Reads the node's blocks, its allocation records and its endpoint reports from NATS, and adds
 * every address the kernel's endpoint map holds that no record names (held under a made-up
 * container id until CNI GC frees it): no address a running pod has is ever handed out again.
 */
export async function readRebuildSource(
  bus: Bus,
  node: string,
  datapath: NodeDatapath,
): Promise<RebuildSource> {
  const nodes = await bus.snapshot([IpamNodeEvent], {
    stream: IPAM_NODES_STREAM,
    filterSubjects: [ipamNodeSubject(node)],
  });
  const assignment = [...nodes.values()][0]?.value;
  const blocks = assignment?.op === 'upsert' ? assignment.blocks : [];
  const allocs = await bus.snapshot([AddressesAllocated], {
    stream: IPAM_ALLOCATIONS_STREAM,
    filterSubjects: [ipamAllocFilter(node)],
  });
  const holders: AdoptedHolder[] = [];
  const named = new Set<string>();
  for (const d of allocs.values()) {
    const a = d.value;
    holders.push({
      containerId: a.containerId,
      pod: { namespace: a.namespace, name: a.pod, uid: a.podUid },
      addresses: a.addresses.map((x) => x.address),
      allocatedAt: a.allocatedAt,
    });
    for (const x of a.addresses) named.add(datapath.endpoints.keyId({ address: x.address }));
  }
  const byEndpoint = new Map<number, string[]>();
  for (const [k, v] of datapath.endpoints.entries()) {
    if (named.has(datapath.endpoints.keyId(k))) continue;
    byEndpoint.set(v.endpointId, [...(byEndpoint.get(v.endpointId) ?? []), k.address]);
  }
  for (const [id, addresses] of byEndpoint)
    holders.push({
      containerId: `lost-endpoint-${id}`,
      pod: { namespace: 'unknown', name: `lost-endpoint-${id}` },
      addresses,
    });

  const reports = await bus.snapshot([EndpointReport], {
    stream: AGENT_STREAM,
    filterSubjects: [agentEndpointFilter(node)],
  });
  const endpoints: StoredEndpoint[] = [];
  for (const d of reports.values()) {
    const r = d.value;
    const e = r.endpoint;
    const netns = e.netns;
    if (r.op !== 'upsert' || netns === undefined) continue;
    const fam = (address: string | undefined) => {
      if (address === undefined) return undefined;
      const b = blocks.find(
        (x) => x.family === (address.includes(':') ? 'IPv6' : 'IPv4') && inBlock(address, x.cidr),
      );
      return b ? { address, cidr: b.cidr, gateway: b.gateway } : undefined;
    };
    const ipv4 = fam(e.ipv4);
    const ipv6 = fam(e.ipv6);
    endpoints.push({
      phase: 'ready',
      containerId: e.containerId,
      ifName: e.ifName,
      network: e.network,
      netns,
      pod: e.pod,
      endpointId: e.endpointId,
      ...(ipv4 ? { ipv4 } : {}),
      ...(ipv6 ? { ipv6 } : {}),
      mac: e.mac,
      hostIfName: e.hostIfName,
      hostIfindex: e.hostIfindex,
      hostMac: e.hostMac,
      mtu: e.mtu ?? 1500,
      identity: e.identity,
      flags:
        (e.policy.ingress === 'enforcing' ? EndpointFlags.ENFORCE_INGRESS : 0) |
        (e.policy.egress === 'enforcing' ? EndpointFlags.ENFORCE_EGRESS : 0),
      createdAt: e.createdAt,
    });
  }
  return { blocks, holders, endpoints };
}

function inBlock(address: string, cidr: string): boolean {
  const p = parsePrefixLenient(cidr);
  const a = tryParseIp(address);
  if (a === undefined || a.family !== p.family) return false;
  return Buffer.from(maskBytes(a.bytes, p.length)).equals(Buffer.from(p.bytes));
}
