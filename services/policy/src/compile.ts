import { ANY_PEER, DirectionBuilder, podBody } from './assemble.ts';
import { contains } from './cidr.ts';
import { selectorMatches } from './labels.ts';
import type { CompileOptions, CompiledPod, PodInput } from './model.ts';
import { podKey } from './model.ts';
import { PortSet, resolvePorts } from './ports.ts';
import type { PortSpec } from './ports.ts';
import type { PeerSpec, PolicySpec, RuleSpec } from './spec.ts';

/**
 * The whole world compiled from scratch, the plain way: for every scheduled pod, every policy of
 * its namespace that selects it, every rule, and every peer checked against every pod. This is
 * the reference the incremental engine is tested against, and what the service compares its
 * published state with on resync; it is not fast and need not be.
 */
export function compileAll(
  pods: Iterable<PodInput>,
  policies: Iterable<PolicySpec>,
  opts: CompileOptions,
): Map<string, CompiledPod> {
  const allPods = [...pods];
  const allPolicies = [...policies];
  const out = new Map<string, CompiledPod>();
  for (const pod of allPods) {
    if (pod.node === undefined) continue;
    const selecting = allPolicies.filter(
      (p) => p.namespace === pod.namespace && selectorMatches(p.podSelector, pod.labels),
    );
    const ingress = new DirectionBuilder();
    const egress = new DirectionBuilder();
    for (const p of selecting) {
      if (p.ingress !== undefined) {
        ingress.enforce = true;
        for (const r of p.ingress) ingressRule(r, p.namespace, pod, allPods, ingress);
      }
      if (p.egress !== undefined) {
        egress.enforce = true;
        for (const r of p.egress) egressRule(r, p.namespace, allPods, egress);
      }
    }
    out.set(podKey(pod.namespace, pod.name), {
      node: pod.node,
      body: podBody(
        pod,
        selecting.map((p) => p.name),
        ingress,
        egress,
        opts,
      ),
    });
  }
  return out;
}

/** Whether a selector peer of a policy in `policyNs` selects `pod`. */
export function podsPeerMatches(
  peer: Extract<PeerSpec, { kind: 'pods' }>,
  policyNs: string,
  pod: {
    readonly namespace: string;
    readonly labels: PodInput['labels'];
    readonly nsLabels: PodInput['nsLabels'];
  },
): boolean {
  const nsOk =
    peer.ns === undefined ? pod.namespace === policyNs : selectorMatches(peer.ns, pod.nsLabels);
  return nsOk && (peer.pod === undefined || selectorMatches(peer.pod, pod.labels));
}

/** Ingress: ports (named ones too) are the selected pod's own, then allowed from each peer. */
function ingressRule(
  r: RuleSpec,
  policyNs: string,
  self: PodInput,
  allPods: readonly PodInput[],
  into: DirectionBuilder,
): void {
  const ports = new PortSet();
  resolvePorts(r.ports, self.ports, ports);
  if (ports.isEmpty()) return;
  if (r.peers === 'all') {
    into.allow(ANY_PEER, ports);
    return;
  }
  for (const peer of r.peers) {
    if (peer.kind === 'block') into.grant(peer.prefix, peer.excepts, ports);
    else
      for (const y of allPods)
        if (podsPeerMatches(peer, policyNs, y)) into.allow(y.identity, ports);
  }
}

/**
 * Egress: numbers and ranges hold for every peer; a named port is resolved against each peer
 * pod's own container ports (as upstream), so it only ever reaches pods: by their identity for
 * selector peers and "all", by their addresses for ipBlock peers.
 */
function egressRule(
  r: RuleSpec,
  policyNs: string,
  allPods: readonly PodInput[],
  into: DirectionBuilder,
): void {
  const numeric = PortSet.of(...r.ports);
  const named: PortSpec[] = r.ports.filter((p) => p.kind === 'named');
  const namedOf = (y: PodInput): PortSet => {
    const s = new PortSet();
    resolvePorts(named, y.ports, s);
    return s;
  };
  if (r.peers === 'all') {
    if (!numeric.isEmpty()) into.allow(ANY_PEER, numeric);
    if (named.length > 0) for (const y of allPods) into.allow(y.identity, namedOf(y));
    return;
  }
  for (const peer of r.peers) {
    if (peer.kind === 'pods') {
      for (const y of allPods) {
        if (!podsPeerMatches(peer, policyNs, y)) continue;
        into.allow(y.identity, numeric);
        if (named.length > 0) into.allow(y.identity, namedOf(y));
      }
      continue;
    }
    if (!numeric.isEmpty()) into.grant(peer.prefix, peer.excepts, numeric);
    if (named.length === 0) continue;
    for (const y of allPods) {
      const ports = namedOf(y);
      if (ports.isEmpty()) continue;
      for (const ip of y.ips) {
        if (contains(peer.prefix, ip) && !peer.excepts.some((e) => contains(e, ip)))
          into.grant(ip, [], ports);
      }
    }
  }
}
