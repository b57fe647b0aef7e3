import { FamilyVersion, tryParseIp } from '@dyad/netaddr';
import { ByteTable } from '../datapath/byte-table.ts';
import type { PodName } from './flow-of.ts';

/** A prefix of a single address (`/32`, `/128`) → that address; undefined for wider prefixes. */
function hostAddress(prefix: string): string | undefined {
  const [addr, len] = prefix.split('/');
  return len === '32' || len === '128' ? addr : undefined;
}

// key: 16 address bytes and the family; value: namespace index u32, name slot u32
const KEY_SIZE = 17;
const VALUE_SIZE = 8;

/** Address → pod, filled by `set`; `commit` makes it the directory's (see replacement()). */
export interface PodsReplacement {
  set(prefix: string, pod: PodName | undefined): void;
  commit(): void;
}

/**
 * One address → pod table: a ByteTable with namespaces interned (by the directory, for the
 * process's life: a cluster has few) and names in one array, not a Map of strings to objects
 * (about 90 bytes an address instead of 300).
 */
class PodTable {
  readonly table = new ByteTable(KEY_SIZE, VALUE_SIZE);
  readonly names: Array<string | undefined> = [];
  /** Name slots free for reuse. */
  readonly free: number[] = [];
}

/**
 * Who is behind an address and what an identity's labels are, for enriching flows. Fed from what
 * the agent follows anyway (the router's ipcache, which names the pod of every pod address in the
 * cluster) and from the policy service's identities; its size follows the cluster's, not traffic.
 */
export class FlowDirectory {
  #pods = new PodTable();
  readonly #key = new Uint8Array(KEY_SIZE);
  readonly #value = new Uint8Array(VALUE_SIZE);
  readonly #namespaces: string[] = [];
  readonly #namespaceIndex = new Map<string, number>();
  readonly #labels = new Map<number, readonly string[]>();
  readonly #local: (address: string) => PodName | undefined;

  /** `local` answers for this node's own endpoints, which the router may not have named yet. */
  constructor(local: (address: string) => PodName | undefined = () => undefined) {
    this.#local = local;
  }

  /**
   * The router's ipcache, whole (a snapshot), entry by entry as it is read: lookups keep
   * answering from the current table until commit().
   */
  replacement(): PodsReplacement {
    const next = new PodTable();
    return {
      set: (prefix, pod) => this.#set(next, prefix, pod),
      commit: () => {
        this.#pods = next;
      },
    };
  }

  /** The address's key in #key; false when it is not an address. */
  #keyOf(address: string): boolean {
    const ip = tryParseIp(address);
    if (ip === undefined) return false;
    this.#key.set(ip.bytes, 0);
    this.#key[16] = FamilyVersion[ip.family];
    return true;
  }

  #view(): DataView {
    return new DataView(this.#value.buffer);
  }

  setPod(prefix: string, pod: PodName | undefined): void {
    this.#set(this.#pods, prefix, pod);
  }

  #set(t: PodTable, prefix: string, pod: PodName | undefined): void {
    const addr = hostAddress(prefix);
    if (addr === undefined || !this.#keyOf(addr)) return;
    const s = t.table.find(this.#key);
    if (s >= 0) {
      const slot = new DataView(t.table.valueAt(s).slice().buffer).getUint32(4, true);
      t.names[slot] = undefined;
      t.free.push(slot);
    }
    if (pod === undefined) {
      t.table.delete(this.#key);
      return;
    }
    let ns = this.#namespaceIndex.get(pod.namespace);
    if (ns === undefined) {
      ns = this.#namespaces.push(pod.namespace) - 1;
      this.#namespaceIndex.set(pod.namespace, ns);
    }
    const slot = t.free.pop() ?? t.names.length;
    t.names[slot] = pod.name;
    const v = this.#view();
    v.setUint32(0, ns, true);
    v.setUint32(4, slot, true);
    t.table.set(this.#key, this.#value);
  }

  #remote(address: string): PodName | undefined {
    if (!this.#keyOf(address)) return undefined;
    const t = this.#pods;
    const s = t.table.find(this.#key);
    if (s < 0) return undefined;
    const v = new DataView(t.table.valueAt(s).slice().buffer);
    const namespace = this.#namespaces[v.getUint32(0, true)];
    const name = t.names[v.getUint32(4, true)];
    return namespace === undefined || name === undefined ? undefined : { namespace, name };
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
    return this.#remote(address) ?? this.#local(address);
  }

  labels(identity: number): readonly string[] {
    return this.#labels.get(identity) ?? [];
  }

  get size(): { pods: number; identities: number } {
    return { pods: this.#pods.table.size, identities: this.#labels.size };
  }
}
