import { formatIp, formatPrefix, parseIpInto, parsePrefixInto } from '@dyad/netaddr';
import { familyOfTag } from '@dyad/libbpf-ts';
import type { IpcacheInfo } from '@dyad/libbpf-ts';
import { ByteTable } from './byte-table.ts';

// key: [0..16) address (masked), 16 family, 17 prefix length
const KEY_SIZE = 18;
// value: identity u32, nodeId u32, host index u32 (0: none, else hosts[i - 1]), flags u8
const VALUE_SIZE = 13;

/**
 * The router's ipcache entries for this node, by canonical prefix, held compactly: 18 bytes of
 * key and 13 of value per entry in a ByteTable, hosting node addresses interned (a cluster has
 * as many as it has nodes). A cluster of 50,000 dual-stack pods is 100,000 entries, about 6 MiB
 * here, where a Map of strings and objects held ten times that. Values are decoded when read.
 */
export class RouterEntries implements ReadonlyMap<string, IpcacheInfo> {
  readonly #table = new ByteTable(KEY_SIZE, VALUE_SIZE);
  readonly #key = new Uint8Array(KEY_SIZE);
  readonly #value = new Uint8Array(VALUE_SIZE);
  readonly #view = new DataView(this.#value.buffer);
  /** Node addresses, interned; they stay for the process's life (one per node ever seen). */
  readonly #hosts: string[] = [];
  readonly #hostIndex = new Map<string, number>();

  constructor(entries?: Iterable<readonly [string, IpcacheInfo]>) {
    if (entries) for (const [prefix, info] of entries) this.set(prefix, info);
  }

  get size(): number {
    return this.#table.size;
  }

  get [Symbol.toStringTag](): string {
    return 'RouterEntries';
  }

  #encodeKey(prefix: string): Uint8Array {
    const p = parsePrefixInto(prefix, this.#key, 0);
    this.#key[16] = p >> 8;
    this.#key[17] = p & 0xff;
    return this.#key;
  }

  #decodeKey(k: Uint8Array): string {
    return formatPrefix({
      family: familyOfTag(k[16] ?? 0),
      bytes: k.slice(0, 16),
      length: k[17] ?? 0,
    });
  }

  #decodeValue(v: Uint8Array): IpcacheInfo {
    const d = new DataView(v.buffer, v.byteOffset, v.length);
    const host = d.getUint32(8, true);
    const base = {
      identity: d.getUint32(0, true),
      nodeId: d.getUint32(4, true),
      flags: v[12] ?? 0,
    };
    const nodeAddress = host === 0 ? undefined : this.#hosts[host - 1];
    return nodeAddress === undefined ? base : { ...base, nodeAddress };
  }

  #host(address: string): number {
    // one spelling per address, as the map would hold it
    const b = new Uint8Array(16);
    const canonical = formatIp(parseIpInto(address, b), b);
    let i = this.#hostIndex.get(canonical);
    if (i === undefined) {
      this.#hosts.push(canonical);
      i = this.#hosts.length;
      this.#hostIndex.set(canonical, i);
    }
    return i;
  }

  set(prefix: string, info: IpcacheInfo): this {
    const host = info.nodeAddress === undefined ? 0 : this.#host(info.nodeAddress);
    this.#view.setUint32(0, info.identity, true);
    this.#view.setUint32(4, info.nodeId, true);
    this.#view.setUint32(8, host, true);
    this.#value[12] = info.flags;
    this.#table.set(this.#encodeKey(prefix), this.#value);
    return this;
  }

  get(prefix: string): IpcacheInfo | undefined {
    const s = this.#table.find(this.#encodeKey(prefix));
    return s < 0 ? undefined : this.#decodeValue(this.#table.valueAt(s));
  }

  has(prefix: string): boolean {
    return this.#table.has(this.#encodeKey(prefix));
  }

  delete(prefix: string): boolean {
    return this.#table.delete(this.#encodeKey(prefix));
  }

  clear(): void {
    this.#table.clear();
  }

  *entries(): MapIterator<[string, IpcacheInfo]> {
    for (const s of this.#table.slots())
      yield [this.#decodeKey(this.#table.keyAt(s)), this.#decodeValue(this.#table.valueAt(s))];
  }

  *keys(): MapIterator<string> {
    for (const s of this.#table.slots()) yield this.#decodeKey(this.#table.keyAt(s));
  }

  *values(): MapIterator<IpcacheInfo> {
    for (const s of this.#table.slots()) yield this.#decodeValue(this.#table.valueAt(s));
  }

  [Symbol.iterator](): MapIterator<[string, IpcacheInfo]> {
    return this.entries();
  }

  forEach(
    fn: (value: IpcacheInfo, key: string, map: ReadonlyMap<string, IpcacheInfo>) => void,
  ): void {
    for (const [k, v] of this.entries()) fn(v, k, this);
  }
}
