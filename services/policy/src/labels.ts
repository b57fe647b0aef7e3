import { createHash } from 'node:crypto';
import { IDENTITY_NAMESPACE_KEY, IdentityLabelSource } from '@dyad/contracts';
import type { LabelSelectorObject } from '@dyad/contracts';

export type Labels = Readonly<Record<string, string>>;

/** The label the apiserver puts on every namespace; added when missing so a name always matches. */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

/** A namespace's labels as identities and selectors see them: always with its name label. */
export function namespaceLabels(namespace: string, labels: Labels | undefined): Labels {
  return { ...labels, [NAMESPACE_NAME_LABEL]: namespace };
}

/**
 * The security-relevant labels of a pod, as identity labels (see IdentityLabelSource): every pod
 * label, every label of its namespace and the namespace's name, sorted by code unit. Two pods get
 * one identity exactly when these are equal.
 */
export function identityLabels(
  namespace: string,
  podLabels: Labels,
  nsLabels: Labels,
): readonly string[] {
  const out: string[] = [`${IdentityLabelSource.dyad}:${IDENTITY_NAMESPACE_KEY}=${namespace}`];
  for (const [k, v] of Object.entries(podLabels)) out.push(`${IdentityLabelSource.pod}:${k}=${v}`);
  for (const [k, v] of Object.entries(nsLabels)) {
    out.push(`${IdentityLabelSource.namespaceLabel}:${k}=${v}`);
  }
  return out.sort();
}

/** The stable text of a label set: what is hashed and compared. */
export function labelSetKey(labels: readonly string[]): string {
  return labels.join('\n');
}

/** SHA-256 of the label set's key, hex: the KV key suffix of `labels.<hash>`. */
export function labelSetHash(labels: readonly string[]): string {
  return createHash('sha256').update(labelSetKey(labels)).digest('hex');
}

/** The parts of an identity's labels, read back (for the pods a selector can see). */
export interface IdentityParts {
  readonly namespace: string;
  readonly podLabels: Labels;
  readonly nsLabels: Labels;
}

export function splitIdentityLabels(labels: readonly string[]): IdentityParts | undefined {
  let namespace: string | undefined;
  const podLabels: Record<string, string> = {};
  const nsLabels: Record<string, string> = {};
  for (const l of labels) {
    const colon = l.indexOf(':');
    const eq = l.indexOf('=', colon + 1);
    if (colon < 0 || eq < 0) return undefined;
    const source = l.slice(0, colon);
    const key = l.slice(colon + 1, eq);
    const value = l.slice(eq + 1);
    if (source === IdentityLabelSource.pod) podLabels[key] = value;
    else if (source === IdentityLabelSource.namespaceLabel) nsLabels[key] = value;
    else if (source === IdentityLabelSource.dyad && key === IDENTITY_NAMESPACE_KEY) {
      namespace = value;
    }
  }
  return namespace === undefined ? undefined : { namespace, podLabels, nsLabels };
}

/**
 * Whether a label selector matches a label set, as Kubernetes' `LabelSelectorAsSelector` does:
 * every matchLabels pair and every expression must hold; NotIn and DoesNotExist hold when the key
 * is absent. An empty selector matches everything.
 */
export function selectorMatches(sel: LabelSelectorObject, labels: Labels): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels)) {
    if (labels[k] !== v) return false;
  }
  for (const e of sel.matchExpressions) {
    const has = Object.hasOwn(labels, e.key);
    const value = labels[e.key];
    switch (e.operator) {
      case 'In':
        if (!has || !e.values.includes(value as string)) return false;
        break;
      case 'NotIn':
        if (has && e.values.includes(value as string)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}

/** Why a selector is not one the apiserver would accept, or undefined when it is fine. */
export function selectorProblem(sel: LabelSelectorObject): string | undefined {
  for (const e of sel.matchExpressions) {
    if ((e.operator === 'In' || e.operator === 'NotIn') && e.values.length === 0) {
      return `${e.operator} on "${e.key}" has no values: read as matching ${e.operator === 'In' ? 'nothing' : 'every value'}`;
    }
    if ((e.operator === 'Exists' || e.operator === 'DoesNotExist') && e.values.length > 0) {
      return `${e.operator} on "${e.key}" has values: they are ignored`;
    }
  }
  return undefined;
}
