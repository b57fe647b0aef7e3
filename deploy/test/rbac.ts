// The chart's RBAC rules as a check: what a rendered set of manifests grants, and to whom.
import type { Manifest } from './chart.ts';

export interface PolicyRule {
  readonly apiGroups?: readonly string[];
  readonly resources?: readonly string[];
  readonly verbs?: readonly string[];
  readonly nonResourceURLs?: readonly string[];
  readonly resourceNames?: readonly string[];
}

interface RoleRef {
  readonly kind: string;
  readonly name: string;
}

interface Subject {
  readonly kind: string;
  readonly name: string;
  readonly namespace?: string;
}

const ROLE_KINDS = new Set(['Role', 'ClusterRole']);
const BINDING_KINDS = new Set(['RoleBinding', 'ClusterRoleBinding']);
const READ_ALL = new Set(['list', 'watch']);

/** The only subject that may list or watch: kube-bridge's ServiceAccount. */
export const KUBE_BRIDGE = { kind: 'ServiceAccount', name: 'dyad-kube-bridge' } as const;

const roleKey = (kind: string, name: string, namespace?: string): string =>
  kind === 'ClusterRole' ? `ClusterRole/${name}` : `Role/${namespace ?? ''}/${name}`;

/**
 * Every way the manifests break Dyad's RBAC rules, one line each; empty when they keep them:
 * no rule grants `*` (verbs, resources, apiGroups, nonResourceURLs); a role that can list or
 * watch is bound to kube-bridge's ServiceAccount and to nothing else; every binding refers to a
 * role the manifests define (a built-in role such as `view` could not be checked).
 */
export function rbacProblems(manifests: readonly Manifest[]): string[] {
  const problems: string[] = [];
  const roles = new Map<string, { manifest: Manifest; rules: readonly PolicyRule[] }>();
  for (const m of manifests) {
    if (!ROLE_KINDS.has(m.kind)) continue;
    const rules = (m.rules as readonly PolicyRule[] | undefined) ?? [];
    roles.set(roleKey(m.kind, m.metadata.name, m.metadata.namespace), { manifest: m, rules });
    if (m.aggregationRule !== undefined) {
      problems.push(
        `${m.kind} ${m.metadata.name}: aggregationRule (its rules come from elsewhere)`,
      );
    }
    rules.forEach((r, i) => {
      for (const field of ['verbs', 'resources', 'apiGroups', 'nonResourceURLs'] as const) {
        for (const v of r[field] ?? []) {
          if (v.includes('*')) {
            problems.push(`${m.kind} ${m.metadata.name} rule ${i}: '${v}' in ${field}`);
          }
        }
      }
    });
  }

  const subjectsOf = new Map<string, Subject[]>();
  for (const m of manifests) {
    if (!BINDING_KINDS.has(m.kind)) continue;
    const ref = m.roleRef as RoleRef;
    // A RoleBinding may name a ClusterRole: its rules then apply in the binding's namespace.
    const key = roleKey(ref.kind, ref.name, m.metadata.namespace);
    if (!roles.has(key)) {
      problems.push(`${m.kind} ${m.metadata.name} binds ${ref.kind} ${ref.name}, not in the chart`);
      continue;
    }
    const subjects = (m.subjects as Subject[] | undefined) ?? [];
    subjectsOf.set(key, [...(subjectsOf.get(key) ?? []), ...subjects]);
  }

  for (const [key, { manifest, rules }] of roles) {
    const reads = rules.some((r) => (r.verbs ?? []).some((v) => READ_ALL.has(v) || v === '*'));
    if (!reads) continue;
    const subjects = subjectsOf.get(key) ?? [];
    const others = subjects.filter(
      (s) => s.kind !== KUBE_BRIDGE.kind || s.name !== KUBE_BRIDGE.name,
    );
    for (const s of others) {
      problems.push(
        `${manifest.kind} ${manifest.metadata.name} can list or watch, and is bound to ${s.kind} ${s.name}`,
      );
    }
    if (subjects.length === 0) {
      problems.push(
        `${manifest.kind} ${manifest.metadata.name} can list or watch, and is not kube-bridge's`,
      );
    }
  }
  return problems;
}
