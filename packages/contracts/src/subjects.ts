import { InvalidSubjectTokenError } from './errors.ts';

/**
 * NATS subject tokens cannot hold '.', '*', '>' or white space, but Kubernetes names may contain
 * dots. Tokens are percent-encoded for exactly those bytes (and '%' itself), so every name maps
 * to one token and back.
 */
const NEEDS_ESCAPE = /[.*>%\s]/g;

export function encodeToken(raw: string): string {
  if (raw.length === 0) throw new InvalidSubjectTokenError('a subject token cannot be empty');
  return raw.replace(
    NEEDS_ESCAPE,
    (ch) => '%' + ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0'),
  );
}

export function decodeToken(token: string): string {
  return token.replace(/%([0-9A-F]{2})/g, (_, hex: string) =>
    String.fromCharCode(parseInt(hex, 16)),
  );
}

/** Token used in place of the namespace for cluster-scoped objects ('_' is not valid in a namespace name). */
export const CLUSTER_SCOPE_TOKEN = '_';

export const K8S_SUBJECT_ROOT = 'dyad.k8s.v1';

/** `dyad.k8s.v1.<kind>.<namespace|_>.<name>`: one subject per object, so the stream keeps its last value. */
export function k8sObjectSubject(
  kind: string,
  namespace: string | undefined,
  name: string,
): string {
  const ns =
    namespace === undefined || namespace === '' ? CLUSTER_SCOPE_TOKEN : encodeToken(namespace);
  return `${K8S_SUBJECT_ROOT}.${kind.toLowerCase()}.${ns}.${encodeToken(name)}`;
}

/** Wildcard for one kind, e.g. every pod: `dyad.k8s.v1.pod.>`. */
export function k8sKindFilter(kind: string): string {
  return `${K8S_SUBJECT_ROOT}.${kind.toLowerCase()}.>`;
}

export interface ParsedK8sSubject {
  readonly kind: string;
  readonly namespace: string | undefined;
  readonly name: string;
}

export function parseK8sObjectSubject(subject: string): ParsedK8sSubject | undefined {
  const prefix = K8S_SUBJECT_ROOT + '.';
  if (!subject.startsWith(prefix)) return undefined;
  const parts = subject.slice(prefix.length).split('.');
  if (parts.length !== 3) return undefined;
  const [kind, ns, name] = parts as [string, string, string];
  return {
    kind,
    namespace: ns === CLUSTER_SCOPE_TOKEN ? undefined : decodeToken(ns),
    name: decodeToken(name),
  };
}

export const DEAD_LETTER_ROOT = 'dyad.dlq.v1';

/** Whether a subject is a dead letter's (dead-lettering one again would loop). */
export function isDeadLetterSubject(subject: string): boolean {
  return subject.startsWith(`${DEAD_LETTER_ROOT}.`);
}

/** Whether `subject` matches the NATS filter `filter` (`*` one token, a final `>` one or more). */
export function subjectMatches(filter: string, subject: string): boolean {
  const f = filter.split('.');
  const s = subject.split('.');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '>') return i === f.length - 1 && s.length > i;
    if (i >= s.length || (f[i] !== '*' && f[i] !== s[i])) return false;
  }
  return f.length === s.length;
}

/** Where a service puts what it could not accept: `dyad.dlq.v1.<service>`. */
export function deadLetterSubject(service: string): string {
  return `${DEAD_LETTER_ROOT}.${encodeToken(service)}`;
}
