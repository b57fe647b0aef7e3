import { PolicyProblemCode } from '@dyad/contracts';
import type { LabelSelectorObject, NetworkPolicyObject, PolicyProblemValue } from '@dyad/contracts';
import type { Prefix } from './cidr.ts';
import { contains, readPrefix } from './cidr.ts';
import { selectorProblem } from './labels.ts';
import { MAX_PORT } from './ports.ts';
import type { PortSpec, Protocol } from './ports.ts';

/** Pods matching `pod` (in the policy's namespace unless `ns` is given) in namespaces matching `ns`. */
export interface PodsPeer {
  readonly kind: 'pods';
  readonly pod?: LabelSelectorObject;
  readonly ns?: LabelSelectorObject;
}

export interface BlockPeer {
  readonly kind: 'block';
  readonly prefix: Prefix;
  /** Only those inside `prefix`; others cannot exclude anything. */
  readonly excepts: readonly Prefix[];
}

export type PeerSpec = PodsPeer | BlockPeer;

export interface RuleSpec {
  /** What the rule allows; empty when every port entry was unusable (then it allows nothing). */
  readonly ports: readonly PortSpec[];
  /** `all`: the rule names no peers, so every peer (Kubernetes' empty `from`/`to`). */
  readonly peers: readonly PeerSpec[] | 'all';
}

/** A NetworkPolicy as the compiler uses it: types made explicit, every part checked. */
export interface PolicySpec {
  readonly key: string;
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly resourceVersion: string;
  readonly podSelector: LabelSelectorObject;
  /** Undefined: the policy does not isolate selected pods for ingress. */
  readonly ingress: readonly RuleSpec[] | undefined;
  readonly egress: readonly RuleSpec[] | undefined;
  /** Where the policy is not enforced exactly as written, and what is enforced instead. */
  readonly problems: readonly PolicyProblemValue[];
}

export function objectKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

type NpPort = NetworkPolicyObject['spec']['ingress'][number]['ports'][number];
type NpPeer = NetworkPolicyObject['spec']['ingress'][number]['from'][number];

/**
 * Normalizes a NetworkPolicy. `policyTypes` absent (empty) means what the apiserver defaults it
 * to: Ingress always, Egress when there are egress rules. Whatever the apiserver would have
 * refused (kube-bridge passes on what it stored) is read in the way that allows least, and
 * reported.
 */
export function normalizePolicy(np: NetworkPolicyObject): PolicySpec {
  const namespace = np.metadata.namespace ?? 'default';
  const problems: PolicyProblemValue[] = [];
  const types = new Set(np.spec.policyTypes);
  if (types.size === 0) {
    types.add('Ingress');
    if (np.spec.egress.length > 0) types.add('Egress');
  }
  checkSelector(np.spec.podSelector, 'spec.podSelector', problems);
  const rules = (
    dir: 'ingress' | 'egress',
    list: ReadonlyArray<{ ports: readonly NpPort[]; peers: readonly NpPeer[] }>,
  ): RuleSpec[] =>
    list.map((r, i) => {
      const at = `spec.${dir}[${i}]`;
      return {
        ports: normalizePorts(r.ports, at, problems),
        peers:
          r.peers.length === 0
            ? 'all'
            : r.peers.flatMap((p, j) => {
                const peer = normalizePeer(
                  p,
                  `${at}.${dir === 'ingress' ? 'from' : 'to'}[${j}]`,
                  problems,
                );
                return peer === undefined ? [] : [peer];
              }),
      };
    });
  return {
    key: objectKey(namespace, np.metadata.name),
    namespace,
    name: np.metadata.name,
    uid: np.metadata.uid,
    resourceVersion: np.metadata.resourceVersion,
    podSelector: np.spec.podSelector,
    ingress: types.has('Ingress')
      ? rules(
          'ingress',
          np.spec.ingress.map((r) => ({ ports: r.ports, peers: r.from })),
        )
      : undefined,
    egress: types.has('Egress')
      ? rules(
          'egress',
          np.spec.egress.map((r) => ({ ports: r.ports, peers: r.to })),
        )
      : undefined,
    problems,
  };
}

function checkSelector(
  sel: LabelSelectorObject,
  path: string,
  problems: PolicyProblemValue[],
): void {
  const why = selectorProblem(sel);
  if (why !== undefined) problems.push({ code: PolicyProblemCode.badSelector, path, message: why });
}

function normalizePorts(
  ports: readonly NpPort[],
  at: string,
  problems: PolicyProblemValue[],
): PortSpec[] {
  if (ports.length === 0) return [{ kind: 'any' }];
  const out: PortSpec[] = [];
  ports.forEach((p, i) => {
    const path = `${at}.ports[${i}]`;
    const protocol: Protocol = p.protocol;
    const problem = (code: PolicyProblemValue['code'], message: string): void => {
      problems.push({ code, path, message });
    };
    if (p.port === undefined) {
      if (p.endPort !== undefined) {
        problem(PolicyProblemCode.badPortRange, 'endPort without port: this entry allows nothing');
        return;
      }
      out.push({ kind: 'range', protocol, from: 0, to: MAX_PORT });
      return;
    }
    if (typeof p.port === 'string') {
      if (p.endPort !== undefined) {
        problem(
          PolicyProblemCode.namedPortWithEndPort,
          `endPort with the named port "${p.port}": only the named port is allowed`,
        );
      }
      out.push({ kind: 'named', protocol, name: p.port });
      return;
    }
    const to = p.endPort ?? p.port;
    if (p.port < 1 || p.port > MAX_PORT) {
      problem(
        PolicyProblemCode.portOutOfRange,
        `port ${p.port} is not in 1-65535: this entry allows nothing`,
      );
      return;
    }
    if (to < p.port) {
      problem(
        PolicyProblemCode.badPortRange,
        `endPort ${to} is below port ${p.port}: this entry allows nothing`,
      );
      return;
    }
    out.push({ kind: 'range', protocol, from: p.port, to });
  });
  return out;
}

function normalizePeer(
  p: NpPeer,
  path: string,
  problems: PolicyProblemValue[],
): PeerSpec | undefined {
  const selectors = p.podSelector !== undefined || p.namespaceSelector !== undefined;
  if (p.ipBlock !== undefined) {
    if (selectors) {
      problems.push({
        code: PolicyProblemCode.badPeer,
        path,
        message: 'ipBlock together with a selector: this peer matches nothing',
      });
      return undefined;
    }
    const prefix = readPrefix(p.ipBlock.cidr);
    if (prefix === undefined) {
      problems.push({
        code: PolicyProblemCode.badPeer,
        path,
        message: `cidr ${p.ipBlock.cidr} is not a prefix: this peer matches nothing`,
      });
      return undefined;
    }
    const excepts: Prefix[] = [];
    p.ipBlock.except.forEach((text, i) => {
      const e = readPrefix(text);
      if (e !== undefined && contains(prefix, e)) excepts.push(e);
      else {
        problems.push({
          code: PolicyProblemCode.exceptOutsideCidr,
          path: `${path}.ipBlock.except[${i}]`,
          message: `${text} is not inside ${prefix.text}: it excludes nothing`,
        });
      }
    });
    return { kind: 'block', prefix, excepts };
  }
  if (!selectors) {
    problems.push({
      code: PolicyProblemCode.badPeer,
      path,
      message: 'a peer with no selector and no ipBlock: it matches nothing',
    });
    return undefined;
  }
  if (p.podSelector !== undefined) checkSelector(p.podSelector, `${path}.podSelector`, problems);
  if (p.namespaceSelector !== undefined)
    checkSelector(p.namespaceSelector, `${path}.namespaceSelector`, problems);
  return {
    kind: 'pods',
    ...(p.podSelector === undefined ? {} : { pod: p.podSelector }),
    ...(p.namespaceSelector === undefined ? {} : { ns: p.namespaceSelector }),
  };
}
