// The upstream Kubernetes NetworkPolicy e2e model (test/e2e/network/netpol), rebuilt for the lab:
// namespaces x, y, z labelled ns=<name>, pods a, b, c in each labelled pod=<name>, every pod
// serving TCP and UDP on 80 and 81 under the upstream port names. A case's truth table is written
// by hand here, never derived from Dyad's compiler, so the suite cannot agree with a wrong compiler.
import type { Family } from '@dyad/netaddr';
import type { ProbeLine, ProbeReply } from '../helpers.ts';

export const NAMESPACES = ['x', 'y', 'z'] as const;
export const POD_NAMES = ['a', 'b', 'c'] as const;
export const NODES = ['node-1', 'node-2', 'node-3'] as const;
export type Ns = (typeof NAMESPACES)[number];
export type PodName = (typeof POD_NAMES)[number];
export type Protocol = ProbeLine['protocol'];

export interface PodRef {
  readonly ns: Ns;
  readonly pod: PodName;
}

export const PODS: readonly PodRef[] = NAMESPACES.flatMap((ns) =>
  POD_NAMES.map((pod) => ({ ns, pod })),
);

export const refOf = (p: PodRef): string => `${p.ns}/${p.pod}`;

/** Where a pod runs: every namespace has one pod on each node, so most pairs cross nodes. */
export function nodeOf(p: PodRef): string {
  const i = (NAMESPACES.indexOf(p.ns) + POD_NAMES.indexOf(p.pod)) % NODES.length;
  return NODES[i] ?? 'node-1';
}

/** The four serving ports, named as upstream names them. */
export const SERVE_PORTS = [80, 81].flatMap((port) =>
  (['TCP', 'UDP'] as const).map((protocol) => ({
    name: `serve-${port}-${protocol.toLowerCase()}`,
    port,
    protocol,
  })),
);

// JSON, not YAML: YAML 1.1 reads the label values `y` and `n` as booleans.
const list = (items: readonly object[]): string =>
  JSON.stringify({ apiVersion: 'v1', kind: 'List', items });

export function namespaceManifests(): string {
  return list(
    NAMESPACES.map((ns) => ({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: ns, labels: { ns } },
    })),
  );
}

export function podManifests(): string {
  return list(
    PODS.map((p) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: p.pod, namespace: p.ns, labels: { pod: p.pod } },
      spec: {
        nodeName: nodeOf(p),
        containers: [
          {
            name: 'main',
            image: 'none',
            ports: SERVE_PORTS.map((x) => ({
              name: x.name,
              containerPort: x.port,
              protocol: x.protocol,
            })),
          },
        ],
      },
    })),
  );
}

/** What one probe asks: a port and protocol, in one family. */
export interface Probe {
  readonly port: number;
  readonly protocol: Protocol;
}

/** Whether `from` reaches `to` on this probe in this family. */
export type Truth = (from: PodRef, to: PodRef, family: Family, probe: Probe) => boolean;

/** Pod addresses by ref and family, for ipBlock cases. */
export type Addresses = ReadonlyMap<string, Partial<Record<Family, string>>>;

export interface CaseContext {
  readonly addresses: Addresses;
  /** The cluster's pod pool of each family, e.g. 198.18.0.0/20. */
  readonly pools: Partial<Record<Family, string>>;
}

/** One state of the cluster's policies and what it must allow. */
export interface Step {
  readonly what: string;
  /** The NetworkPolicies that exist in this step (others are deleted), as objects. */
  readonly policies: (ctx: CaseContext) => readonly object[];
  readonly probes: readonly Probe[];
  readonly truth: (ctx: CaseContext) => Truth;
}

export interface Case {
  readonly name: string;
  readonly steps: readonly Step[];
}

export const TCP80: Probe = { port: 80, protocol: 'TCP' };
export const TCP81: Probe = { port: 81, protocol: 'TCP' };
export const UDP80: Probe = { port: 80, protocol: 'UDP' };
export const UDP81: Probe = { port: 81, protocol: 'UDP' };

export const is =
  (ns: Ns, pod?: PodName) =>
  (p: PodRef): boolean =>
    p.ns === ns && (pod === undefined || p.pod === pod);

/** Every probe line of a step: each ordered pair of distinct pods, each family, each probe. */
export function probeLines(families: readonly Family[], probes: readonly Probe[]): ProbeLine[] {
  const out: ProbeLine[] = [];
  for (const from of PODS)
    for (const to of PODS) {
      if (from === to) continue;
      for (const family of families)
        for (const p of probes)
          out.push({
            from: refOf(from),
            to: refOf(to),
            port: p.port,
            protocol: p.protocol,
            family,
          });
    }
  return out;
}

function podOf(ref: string): PodRef {
  const found = PODS.find((p) => refOf(p) === ref);
  if (found === undefined) throw new Error(`not a pod of the model: ${ref}`);
  return found;
}

export interface Mismatch {
  readonly line: ProbeReply;
  readonly expected: boolean;
}

/** The replies that disagree with the truth table (errors always disagree). */
export function mismatches(replies: readonly ProbeReply[], truth: Truth): Mismatch[] {
  const out: Mismatch[] = [];
  for (const r of replies) {
    const expected = truth(podOf(r.from), podOf(r.to), r.family, r);
    const got = r.result === 'connected';
    if (r.result === 'error' || got !== expected) out.push({ line: r, expected });
  }
  return out;
}

/**
 * The matrix of one family and probe, as upstream prints it: rows are sources, columns
 * destinations; `.` connected as expected, `X` blocked as expected, `!` connected but should be
 * blocked, `?` blocked but should connect, `E` a probe error, `-` the pod itself.
 */
export function renderMatrix(
  replies: readonly ProbeReply[],
  truth: Truth,
  family: Family,
  probe: Probe,
): string {
  const refs = PODS.map(refOf);
  const cell = new Map<string, string>();
  for (const r of replies) {
    if (r.family !== family || r.port !== probe.port || r.protocol !== probe.protocol) continue;
    const expected = truth(podOf(r.from), podOf(r.to), family, probe);
    const got = r.result === 'connected';
    const mark =
      r.result === 'error' ? 'E' : got === expected ? (got ? '.' : 'X') : got ? '!' : '?';
    cell.set(`${r.from} ${r.to}`, mark);
  }
  const head = `${family} ${probe.protocol}/${probe.port}`.padEnd(8);
  const lines = [`${head} ${refs.map((r) => r.padEnd(4)).join('')}`];
  for (const from of refs) {
    const row = refs.map((to) =>
      (from === to ? '-' : (cell.get(`${from} ${to}`) ?? ' ')).padEnd(4),
    );
    lines.push(`${from.padEnd(Math.max(8, head.length))} ${row.join('')}`);
  }
  return lines.join('\n');
}

/** Every matrix of a step that has a mismatch, for a person to read. */
export function renderFailures(
  replies: readonly ProbeReply[],
  truth: Truth,
  families: readonly Family[],
  probes: readonly Probe[],
): string {
  const out: string[] = [];
  for (const family of families)
    for (const probe of probes) {
      const bad = mismatches(
        replies.filter(
          (r) => r.family === family && r.port === probe.port && r.protocol === probe.protocol,
        ),
        truth,
      );
      if (bad.length > 0) out.push(renderMatrix(replies, truth, family, probe));
    }
  return out.length === 0
    ? ''
    : `${out.join('\n\n')}\n(. connected, X blocked, ! connected but should be blocked, ? blocked but should connect, E error)`;
}
