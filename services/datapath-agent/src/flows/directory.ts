import type { PodName } from './flow-of.ts';

/** A prefix of a single address (`/32`, `/128`) → that address; undefined for wider prefixes. */
function hostAddress(prefix: string): string | undefined {
  const [addr, len] = prefix.split('/');
  return len === '32' || len === '128' ? addr : undefined;
}

/**
 * Who is behind an address and what an identity's labels are, for enriching flows. Fed from what
 * the agent follows anyway (the router's ipcache, which names the pod of every pod address in the
 * cluster) and from the policy service's identities; its size follows the cluster's, not traffic.
 */
export class FlowDirectory {
  readonly #pods = new Map<string, PodName>();
  readonly #labels = new Map<number, readonly string[]>();
  readonly #local: (address: string) => PodName | undefined;

  /** `local` answers for this node's own endpoints, which the router may not have named yet. */
  constructor(local: (address: string) => PodName | undefined = () => undefined) {
    this.#local = local;
  }

  /** The router's ipcache, whole (after a snapshot). */
  replacePods(entries: Iterable<readonly [string, PodName | undefined]>): void {
    this.#pods.clear();
    for (const [prefix, pod] of entries) this.setPod(prefix, pod);
  }

  setPod(prefix: string, pod: PodName | undefined): void {
    const addr = hostAddress(prefix);
    if (addr === undefined) return;
    if (pod) this.#pods.set(addr, pod);
    else this.#pods.delete(addr);
  }

  replaceLabels(entries: Iterable<readonly [number, readonly string[]]>): void {
    this.#labels.clear();
    for (const [id, labels] of entries) this.#labels.set(id, labels);
  }

  setLabels(identity: number, labels: readonly string[] | undefined): void {
    if (labels) this.#labels.set(identity, labels);
    else this.#labels.delete(identity);
  }

  pod(address: string): PodName | undefined {
    return this.#pods.get(address) ?? this.#local(address);
  }

  labels(identity: number): readonly string[] {
    return this.#labels.get(identity) ?? [];
  }

  get size(): { pods: number; identities: number } {
    return { pods: this.#pods.size, identities: this.#labels.size };
  }
}
