import { ANY_PEER, DirectionBuilder, podBody } from './assemble.ts';
import type { CidrGrant, Prefix } from './cidr.ts';
import { contains } from './cidr.ts';
import { podsPeerMatches } from './compile.ts';
import type { Labels } from './labels.ts';
import { selectorMatches } from './labels.ts';
import type { CompileOptions, CompiledPod, PodInput, PolicyDelta } from './model.ts';
import { podKey, sameIps, sameLabels, samePod, samePorts } from './model.ts';
import { PortSet, hasNamedPort, resolvePorts } from './ports.ts';
import type { PortSpec } from './ports.ts';
import type { PeerSpec, PolicySpec, RuleSpec } from './spec.ts';

/** A live identity: one some pod has. Its labels are those of every pod that has it. */
interface IdentityEntry {
  readonly id: number;
  readonly namespace: string;
  readonly labels: Labels;
  readonly nsLabels: Labels;
  readonly pods: Set<string>;
}

/** An ingress rule with its peers resolved; ports stay as written (named ones are per selected pod). */
interface IngressRule {
  readonly ports: readonly PortSpec[];
  readonly all: boolean;
  readonly identities: readonly number[];
  readonly blocks: ReadonlyArray<{ readonly prefix: Prefix; readonly excepts: readonly Prefix[] }>;
}

/**
 * The part of a policy that does not depend on which of its pods it is applied to: ingress peers
 * resolved to identities, and egress fully resolved (its named ports belong to the peers, not to
 * the selected pod). Recomputed when a peer identity comes or goes, never per selected pod.
 */
interface CompiledPolicy {
  readonly ingress: readonly IngressRule[] | undefined;
  readonly egress:
    | { readonly peers: ReadonlyMap<number, PortSet>; readonly grants: readonly CidrGrant[] }
    | undefined;
  /** Equal for equal compiled policies: when it did not change, its pods need no recompute. */
  readonly signature: string;
}

interface Published {
  readonly node: string;
  readonly json: string;
  readonly compiled: CompiledPod;
}

/**
 * The incremental compiler. Inputs change one pod or one policy at a time; `drain()` returns the
 * per-node changes of pod policies since the last drain. Work follows what a change touches:
 *
 * - a policy's own pods are found by its namespace and selector (not by scanning every pod);
 * - a pod's policies are re-selected only when its labels change;
 * - peers are identities, so a pod only moves other pods' policies when its identity is new
 *   (first pod) or gone (last pod), and then only policies with a peer that matches it;
 * - egress named ports depend on the peers' container ports (and for ipBlock peers on their
 *   addresses), so those changes recompile only policies with egress named ports;
 * - a recompiled policy whose result did not change recomputes none of its pods, and a pod whose
 *   message did not change is not published.
 *
 * `compileAll` (compile.ts) computes the same from scratch; a seeded property test holds them equal.
 */
export class PolicyEngine {
  readonly #opts: CompileOptions;
  readonly #pods = new Map<string, PodInput>();
  readonly #podsByNs = new Map<string, Set<string>>();
  readonly #policies = new Map<string, PolicySpec>();
  readonly #policiesByNs = new Map<string, Set<string>>();
  readonly #identities = new Map<number, IdentityEntry>();
  /** policy → pods it selects, and the reverse. */
  readonly #selected = new Map<string, Set<string>>();
  readonly #selecting = new Map<string, Set<string>>();
  readonly #compiled = new Map<string, CompiledPolicy>();
  /** Policies with egress named ports towards pods, and towards ipBlocks. */
  readonly #egressNamed = new Set<string>();
  readonly #egressNamedBlocks = new Set<string>();
  readonly #dirtyPods = new Set<string>();
  readonly #dirtyPolicies = new Set<string>();
  readonly #published = new Map<string, Published>();

  constructor(opts: CompileOptions) {
    this.#opts = opts;
  }

  get podCount(): number {
    return this.#pods.size;
  }

  get policyCount(): number {
    return this.#policies.size;
  }

  /** Identities some pod has, and how many pods have each. */
  identityUsage(): Map<number, number> {
    return new Map([...this.#identities].map(([id, e]) => [id, e.pods.size]));
  }

  pod(key: string): PodInput | undefined {
    return this.#pods.get(key);
  }

  pods(): IterableIterator<PodInput> {
    return this.#pods.values();
  }

  policies(): IterableIterator<PolicySpec> {
    return this.#policies.values();
  }

  /** Every scheduled pod's policy as of the last drain. */
  published(): Map<string, CompiledPod> {
    return new Map([...this.#published].map(([k, p]) => [k, p.compiled]));
  }

  upsertPod(pod: PodInput): void {
    const key = podKey(pod.namespace, pod.name);
    const old = this.#pods.get(key);
    if (old !== undefined && samePod(old, pod)) return;
    this.#pods.set(key, pod);
    setAdd(this.#podsByNs, pod.namespace, key);
    if (old === undefined || old.identity !== pod.identity) {
      if (old !== undefined) this.#leaveIdentity(old.identity, key);
      this.#joinIdentity(pod, key);
    }
    if (old === undefined || !sameLabels(old.labels, pod.labels)) this.#reselect(key, pod);
    this.#peerDetailsChanged(old, pod);
    this.#dirtyPods.add(key);
  }

  removePod(namespace: string, name: string): void {
    const key = podKey(namespace, name);
    const old = this.#pods.get(key);
    if (old === undefined) return;
    this.#pods.delete(key);
    setDelete(this.#podsByNs, namespace, key);
    this.#leaveIdentity(old.identity, key);
    for (const p of this.#selecting.get(key) ?? []) this.#selected.get(p)?.delete(key);
    this.#selecting.delete(key);
    this.#peerDetailsChanged(old, undefined);
    this.#dirtyPods.add(key);
  }

  upsertPolicy(spec: PolicySpec): void {
    const key = spec.key;
    const had = this.#policies.has(key);
    this.#policies.set(key, spec);
    setAdd(this.#policiesByNs, spec.namespace, key);
    const before = this.#selected.get(key) ?? new Set<string>();
    const after = new Set<string>();
    for (const podK of this.#podsByNs.get(spec.namespace) ?? []) {
      const pod = this.#pods.get(podK);
      if (pod !== undefined && selectorMatches(spec.podSelector, pod.labels)) after.add(podK);
    }
    for (const podK of before) if (!after.has(podK)) this.#selecting.get(podK)?.delete(key);
    for (const podK of after) setAdd(this.#selecting, podK, key);
    this.#selected.set(key, after);
    // Its pods (old and new) recompute whatever the compiled part turns out to be: a policy's
    // name is in their messages, and a replaced spec may differ only in ports of ingress rules.
    for (const podK of before) this.#dirtyPods.add(podK);
    for (const podK of after) this.#dirtyPods.add(podK);
    if (had) this.#compiled.delete(key);
    this.#dirtyPolicies.add(key);
    this.#indexNamed(key, spec);
  }

  removePolicy(namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    if (!this.#policies.delete(key)) return;
    setDelete(this.#policiesByNs, namespace, key);
    for (const podK of this.#selected.get(key) ?? []) {
      this.#selecting.get(podK)?.delete(key);
      this.#dirtyPods.add(podK);
    }
    this.#selected.delete(key);
    this.#compiled.delete(key);
    this.#dirtyPolicies.delete(key);
    this.#egressNamed.delete(key);
    this.#egressNamedBlocks.delete(key);
  }

  /** Every pod marked, every policy recompiled: the next drain checks everything. */
  markAll(): void {
    for (const k of this.#policies.keys()) this.#dirtyPolicies.add(k);
    for (const k of this.#pods.keys()) this.#dirtyPods.add(k);
    for (const k of this.#published.keys()) this.#dirtyPods.add(k);
  }

  /** Recompiles what changed and returns the per-node changes since the last drain. */
  drain(): PolicyDelta[] {
    for (const key of this.#dirtyPolicies) {
      const spec = this.#policies.get(key);
      if (spec === undefined) continue;
      const next = this.#compilePolicy(spec);
      const prev = this.#compiled.get(key);
      this.#compiled.set(key, next);
      if (prev === undefined || prev.signature !== next.signature) {
        for (const podK of this.#selected.get(key) ?? []) this.#dirtyPods.add(podK);
      }
    }
    this.#dirtyPolicies.clear();
    const out: PolicyDelta[] = [];
    for (const key of [...this.#dirtyPods].sort()) {
      const pod = this.#pods.get(key);
      const prev = this.#published.get(key);
      const next = pod?.node === undefined ? undefined : this.#compilePod(pod, pod.node);
      if (prev !== undefined && (next === undefined || next.node !== prev.node)) {
        const { namespace, name } = prev.compiled.body;
        out.push({ op: 'delete', node: prev.node, key, namespace, name });
        this.#published.delete(key);
      }
      if (next === undefined) continue;
      const json = JSON.stringify(next.body);
      if (prev !== undefined && prev.node === next.node && prev.json === json) continue;
      this.#published.set(key, { node: next.node, json, compiled: next });
      out.push({ op: 'upsert', node: next.node, key, body: next.body });
    }
    this.#dirtyPods.clear();
    return out;
  }

  // ---- pods as peers ----

  #joinIdentity(pod: PodInput, key: string): void {
    let e = this.#identities.get(pod.identity);
    if (e === undefined) {
      e = {
        id: pod.identity,
        namespace: pod.namespace,
        labels: pod.labels,
        nsLabels: pod.nsLabels,
        pods: new Set(),
      };
      this.#identities.set(pod.identity, e);
      this.#identityCameOrWent(e);
    }
    e.pods.add(key);
  }

  #leaveIdentity(id: number, key: string): void {
    const e = this.#identities.get(id);
    if (e === undefined) return;
    e.pods.delete(key);
    if (e.pods.size > 0) return;
    this.#identities.delete(id);
    this.#identityCameOrWent(e);
  }

  /** A peer set changed only for policies that have a selector peer matching the identity. */
  #identityCameOrWent(e: IdentityEntry): void {
    for (const [key, spec] of this.#policies) {
      if (this.#dirtyPolicies.has(key)) continue;
      if (
        matchesAnyPeer(spec.ingress, spec.namespace, e) ||
        matchesAnyPeer(spec.egress, spec.namespace, e)
      ) {
        this.#dirtyPolicies.add(key);
      }
    }
  }

  /**
   * Egress named ports resolve against peer pods' container ports (and, for ipBlock peers, their
   * addresses): a pod that comes, goes, or changes those may change such policies.
   */
  #peerDetailsChanged(old: PodInput | undefined, pod: PodInput | undefined): void {
    if (this.#egressNamed.size === 0 && this.#egressNamedBlocks.size === 0) return;
    const portsChanged =
      old === undefined ||
      pod === undefined ||
      old.identity !== pod.identity ||
      !samePorts(old.ports, pod.ports);
    const ipsChanged = portsChanged || !sameIps(old.ips, pod.ips);
    if (ipsChanged) for (const k of this.#egressNamedBlocks) this.#dirtyPolicies.add(k);
    if (!portsChanged) return;
    for (const k of this.#egressNamed) {
      const spec = this.#policies.get(k);
      if (spec === undefined || this.#dirtyPolicies.has(k)) continue;
      for (const p of [old, pod]) {
        if (p !== undefined && egressNamedReaches(spec, p)) {
          this.#dirtyPolicies.add(k);
          break;
        }
      }
    }
  }

  #indexNamed(key: string, spec: PolicySpec): void {
    this.#egressNamed.delete(key);
    this.#egressNamedBlocks.delete(key);
    for (const r of spec.egress ?? []) {
      if (!hasNamedPort(r.ports)) continue;
      if (r.peers === 'all' || r.peers.some((p) => p.kind === 'pods')) this.#egressNamed.add(key);
      if (r.peers !== 'all' && r.peers.some((p) => p.kind === 'block'))
        this.#egressNamedBlocks.add(key);
    }
  }

  // ---- selection ----

  #reselect(podK: string, pod: PodInput): void {
    const before = this.#selecting.get(podK) ?? new Set<string>();
    const after = new Set<string>();
    for (const polK of this.#policiesByNs.get(pod.namespace) ?? []) {
      const spec = this.#policies.get(polK);
      if (spec !== undefined && selectorMatches(spec.podSelector, pod.labels)) after.add(polK);
    }
    for (const polK of before) if (!after.has(polK)) this.#selected.get(polK)?.delete(podK);
    for (const polK of after) setAdd(this.#selected, polK, podK);
    this.#selecting.set(podK, after);
  }

  // ---- compiling ----

  #peerIdentities(peer: Extract<PeerSpec, { kind: 'pods' }>, policyNs: string): IdentityEntry[] {
    const out: IdentityEntry[] = [];
    for (const e of this.#identities.values()) if (podsPeerMatches(peer, policyNs, e)) out.push(e);
    return out.sort((a, b) => a.id - b.id);
  }

  #compilePolicy(spec: PolicySpec): CompiledPolicy {
    const sig: string[] = [];
    let ingress: IngressRule[] | undefined;
    if (spec.ingress !== undefined) {
      ingress = spec.ingress.map((r) => {
        const identities: number[] = [];
        const blocks: Array<{ prefix: Prefix; excepts: readonly Prefix[] }> = [];
        if (r.peers !== 'all') {
          for (const peer of r.peers) {
            if (peer.kind === 'block') blocks.push({ prefix: peer.prefix, excepts: peer.excepts });
            else for (const e of this.#peerIdentities(peer, spec.namespace)) identities.push(e.id);
          }
        }
        return { ports: r.ports, all: r.peers === 'all', identities, blocks };
      });
      for (const r of ingress) sig.push(`i:${r.identities.join(',')}`);
    }
    let egress: CompiledPolicy['egress'];
    if (spec.egress !== undefined) {
      const peers = new Map<number, PortSet>();
      const grants: CidrGrant[] = [];
      const allow = (id: number, ports: PortSet): void => {
        if (ports.isEmpty()) return;
        let s = peers.get(id);
        if (s === undefined) peers.set(id, (s = new PortSet()));
        s.addSet(ports);
      };
      for (const r of spec.egress) this.#egressRule(r, spec.namespace, allow, grants);
      egress = { peers, grants };
      const ids = [...peers.keys()].sort((a, b) => a - b);
      sig.push(`e:${ids.map((id) => `${id}=${peers.get(id)?.key() ?? ''}`).join(',')}`);
      sig.push(
        `g:${grants.map((g) => `${g.prefix.text}-${g.excepts.map((e) => e.text).join('+')}=${g.ports.key()}`).join(',')}`,
      );
    }
    return { ingress, egress, signature: sig.join('|') };
  }

  #egressRule(
    r: RuleSpec,
    policyNs: string,
    allow: (id: number, ports: PortSet) => void,
    grants: CidrGrant[],
  ): void {
    const numeric = PortSet.of(...r.ports);
    const named = r.ports.filter((p) => p.kind === 'named');
    const namedOfIdentity = (e: IdentityEntry): PortSet => {
      const s = new PortSet();
      for (const podK of e.pods) {
        const y = this.#pods.get(podK);
        if (y !== undefined) resolvePorts(named, y.ports, s);
      }
      return s;
    };
    if (r.peers === 'all') {
      allow(ANY_PEER, numeric);
      if (named.length > 0)
        for (const e of this.#identities.values()) allow(e.id, namedOfIdentity(e));
      return;
    }
    for (const peer of r.peers) {
      if (peer.kind === 'pods') {
        for (const e of this.#peerIdentities(peer, policyNs)) {
          allow(e.id, numeric);
          if (named.length > 0) allow(e.id, namedOfIdentity(e));
        }
        continue;
      }
      if (!numeric.isEmpty())
        grants.push({ prefix: peer.prefix, excepts: peer.excepts, ports: numeric });
      if (named.length === 0) continue;
      for (const y of this.#pods.values()) {
        const ports = new PortSet();
        resolvePorts(named, y.ports, ports);
        if (ports.isEmpty()) continue;
        for (const ip of y.ips) {
          if (contains(peer.prefix, ip) && !peer.excepts.some((e) => contains(e, ip))) {
            grants.push({ prefix: ip, excepts: [], ports });
          }
        }
      }
    }
  }

  #compilePod(pod: PodInput, node: string): CompiledPod {
    const key = podKey(pod.namespace, pod.name);
    const names: string[] = [];
    const ingress = new DirectionBuilder();
    const egress = new DirectionBuilder();
    for (const polK of this.#selecting.get(key) ?? []) {
      const spec = this.#policies.get(polK);
      const c = this.#compiled.get(polK);
      if (spec === undefined || c === undefined) continue;
      names.push(spec.name);
      if (c.ingress !== undefined) {
        ingress.enforce = true;
        for (const r of c.ingress) {
          const ports = new PortSet();
          resolvePorts(r.ports, pod.ports, ports);
          if (ports.isEmpty()) continue;
          if (r.all) ingress.allow(ANY_PEER, ports);
          for (const id of r.identities) ingress.allow(id, ports);
          for (const b of r.blocks) ingress.grant(b.prefix, b.excepts, ports);
        }
      }
      if (c.egress !== undefined) {
        egress.enforce = true;
        for (const [id, ports] of c.egress.peers) egress.allow(id, ports);
        for (const g of c.egress.grants) egress.grant(g.prefix, g.excepts, g.ports);
      }
    }
    return { node, body: podBody(pod, names, ingress, egress, this.#opts) };
  }
}

function matchesAnyPeer(
  rules: readonly RuleSpec[] | undefined,
  policyNs: string,
  e: IdentityEntry,
): boolean {
  for (const r of rules ?? []) {
    if (r.peers === 'all') continue;
    for (const p of r.peers) if (p.kind === 'pods' && podsPeerMatches(p, policyNs, e)) return true;
  }
  return false;
}

/** Whether a pod is among the pod peers of some egress rule with named ports. */
function egressNamedReaches(spec: PolicySpec, pod: PodInput): boolean {
  for (const r of spec.egress ?? []) {
    if (!hasNamedPort(r.ports)) continue;
    if (r.peers === 'all') return true;
    for (const p of r.peers)
      if (p.kind === 'pods' && podsPeerMatches(p, spec.namespace, pod)) return true;
  }
  return false;
}

function setAdd<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  let s = m.get(k);
  if (s === undefined) m.set(k, (s = new Set()));
  s.add(v);
}

function setDelete<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  const s = m.get(k);
  if (s === undefined) return;
  s.delete(v);
  if (s.size === 0) m.delete(k);
}
