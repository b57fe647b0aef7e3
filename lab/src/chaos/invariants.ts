// What must hold after every fault, as a pure check over one snapshot of the cluster: the
// apiserver's pods, each node's agent (its endpoints, blocks and map drift) and a probe matrix.
import type { Family } from '@dyad/netaddr';

export interface PodFact {
  readonly name: string;
  readonly node: string;
  /** status.podIPs as the pod runtime wrote them from the CNI result. */
  readonly podIPs: readonly string[];
}

export interface EndpointFact {
  readonly node: string;
  readonly pod: string;
  readonly phase: string;
  readonly addresses: readonly string[];
}

export interface NodeFact {
  readonly node: string;
  /** Why this node's agent could not be read, if it could not. */
  readonly unreachable?: string;
  readonly blocks: readonly Family[];
  readonly drift?: Readonly<Record<string, number>>;
}

export interface Snapshot {
  readonly families: readonly Family[];
  /** Pods that exist and are not being deleted, in the chaos namespace. */
  readonly pods: readonly PodFact[];
  /** Pods being deleted right now: their endpoints may still be there. */
  readonly terminating: ReadonlySet<string>;
  /** Names the churn deleted (never reused). */
  readonly deleted: ReadonlySet<string>;
  readonly endpoints: readonly EndpointFact[];
  readonly nodes: readonly NodeFact[];
  /**
   * Each chaos pod's last value in DYAD_K8S as kube-bridge published it (`upsert`/`delete`), or
   * why the stream could not be read.
   */
  readonly bridged: ReadonlyMap<string, 'upsert' | 'delete'> | string;
  /** Probes of the matrix between the pods that did not connect: `a->b IPv6 (reason)`. */
  readonly matrixFailures: readonly string[];
  /** What the bus holds of the state each owner keeps there, or why it could not be read. */
  readonly bus: BusFact | string;
}

/**
 * The records the owners of Dyad's state keep in JetStream, so that a bus that lost them (the
 * whole NATS cluster's data gone) is seen to hold them again, not only the datapath to work on.
 */
export interface BusFact {
  /** Every stream the cluster should have (KV buckets as `KV_<bucket>`) and the replicas it has (undefined: missing). */
  readonly streams: ReadonlyMap<string, number | undefined>;
  readonly replicas: number;
  /** Nodes with a live block record from ipam. */
  readonly ipamNodes: ReadonlySet<string>;
  /** Pods with a live endpoint record from their node's agent. */
  readonly endpointRecords: ReadonlySet<string>;
  /** Per node, the prefixes of the router's live ipcache entries for it. */
  readonly ipcache: ReadonlyMap<string, ReadonlySet<string>>;
}

const familyOf = (a: string): Family => (a.includes(':') ? 'IPv6' : 'IPv4');

/** Every violation, one line each; none means the cluster is where it must be. */
export function violations(s: Snapshot): string[] {
  const out: string[] = [];
  for (const n of s.nodes) {
    if (n.unreachable !== undefined) {
      out.push(`${n.node}: agent unreachable (${n.unreachable})`);
      continue;
    }
    for (const f of s.families) if (!n.blocks.includes(f)) out.push(`${n.node}: no ${f} block`);
    if (n.drift === undefined) out.push(`${n.node}: the agent reports no drift`);
    else
      for (const [map, count] of Object.entries(n.drift))
        if (count !== 0)
          out.push(`${n.node}: ${count} ${map} entries differ from the desired state`);
  }
  const byPod = new Map<string, EndpointFact[]>();
  for (const e of s.endpoints) byPod.set(e.pod, [...(byPod.get(e.pod) ?? []), e]);
  for (const p of s.pods) {
    const eps = byPod.get(p.name) ?? [];
    if (eps.length !== 1) {
      out.push(`${p.name}: ${eps.length} endpoints`);
      continue;
    }
    const ep = eps[0];
    if (ep === undefined) continue;
    if (ep.node !== p.node) out.push(`${p.name}: endpoint on ${ep.node}, pod on ${p.node}`);
    if (ep.phase !== 'ready') out.push(`${p.name}: endpoint ${ep.phase}`);
    for (const f of s.families) {
      const n = ep.addresses.filter((a) => familyOf(a) === f).length;
      if (n !== 1) out.push(`${p.name}: ${n} ${f} addresses`);
    }
    const status = [...p.podIPs].sort().join(',');
    if (status !== [...ep.addresses].sort().join(','))
      out.push(
        `${p.name}: status.podIPs ${status || '(none)'} but the agent holds ${ep.addresses.join(',')}`,
      );
  }
  const live = new Set(s.pods.map((p) => p.name));
  const holder = new Map<string, string>();
  for (const e of s.endpoints) {
    if (!live.has(e.pod) && !s.terminating.has(e.pod))
      out.push(
        `${e.pod}${s.deleted.has(e.pod) ? ' (deleted)' : ''}: ${e.node} still holds ${e.addresses.join(',')}`,
      );
    for (const a of e.addresses) {
      const other = holder.get(a);
      if (other !== undefined && other !== e.pod)
        out.push(`${a} held by both ${other} and ${e.pod}`);
      holder.set(a, e.pod);
    }
  }
  if (typeof s.bridged === 'string') out.push(`DYAD_K8S not readable: ${s.bridged}`);
  else {
    // kube-bridge lost nothing: what exists is on NATS, what was deleted is not there as live
    for (const p of s.pods)
      if (s.bridged.get(p.name) !== 'upsert') out.push(`${p.name}: not in DYAD_K8S`);
    for (const name of s.deleted)
      if (!live.has(name) && !s.terminating.has(name) && s.bridged.get(name) === 'upsert')
        out.push(`${name} (deleted): DYAD_K8S still has it live`);
  }
  out.push(...s.matrixFailures.map((f) => `matrix: ${f}`));
  out.push(...busViolations(s));
  return out;
}

function busViolations(s: Snapshot): string[] {
  const b = s.bus;
  if (typeof b === 'string') return [`the bus not readable: ${b}`];
  const out: string[] = [];
  for (const [name, replicas] of b.streams)
    if (replicas === undefined) out.push(`stream ${name} missing`);
    else if (replicas !== b.replicas)
      out.push(`stream ${name}: ${replicas} replicas, not ${b.replicas}`);
  for (const n of s.nodes)
    if (!b.ipamNodes.has(n.node)) out.push(`${n.node}: no block record from ipam`);
  for (const p of s.pods) {
    if (!b.endpointRecords.has(p.name)) out.push(`${p.name}: no endpoint record from its agent`);
    for (const n of s.nodes) {
      const have = b.ipcache.get(n.node);
      for (const a of p.podIPs)
        if (have?.has(`${a}/${familyOf(a) === 'IPv4' ? 32 : 128}`) !== true)
          out.push(`${n.node}: no ipcache entry from the router for ${p.name}'s ${a}`);
    }
  }
  return out;
}
