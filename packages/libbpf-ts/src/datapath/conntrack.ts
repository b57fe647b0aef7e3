import { mapCodec, mappedCodec, structCodec } from '../codec.ts';
import type { MapCodec } from '../codec.ts';
import { defineLayout } from '../layout.ts';
import { FamilyVersion, formatIp, parseIp } from '@dyad/netaddr';
import { Direction, familyOfTag } from './constants.ts';
import type { BpfMap } from '../map.ts';
import type { Libbpf } from '../libbpf.ts';
import { MapType } from '../map-types.ts';

/** bpf/include/dyad/map_conntrack.h: the key and value of every endpoint's table. */
export const ctKeyLayout = defineLayout('dy_ct_key', 40, [
  { name: 'saddr', offset: 0, kind: 'bytes', length: 16 },
  { name: 'daddr', offset: 16, kind: 'bytes', length: 16 },
  { name: 'sport', offset: 32, kind: 'be16' },
  { name: 'dport', offset: 34, kind: 'be16' },
  { name: 'proto', offset: 36, kind: 'u8' },
  { name: 'family', offset: 37, kind: 'u8' },
  { name: 'dir', offset: 38, kind: 'u8' },
  { name: 'pad', offset: 39, kind: 'pad', length: 1 },
] as const);

export const ctEntryLayout = defineLayout('dy_ct_entry', 32, [
  { name: 'expires_ns', offset: 0, kind: 'u64' },
  { name: 'packets', offset: 8, kind: 'u64' },
  { name: 'bytes', offset: 16, kind: 'u64' },
  { name: 'src_identity', offset: 24, kind: 'u32' },
  { name: 'flags', offset: 28, kind: 'u32' },
] as const);

export interface CtKey {
  readonly src: string;
  readonly dst: string;
  readonly sport: number;
  readonly dport: number;
  readonly proto: number;
  readonly direction: 'ingress' | 'egress';
}

export interface CtEntry {
  /** CLOCK_MONOTONIC deadline in ns (bpf_ktime_get_ns). */
  readonly expiresNs: bigint;
  readonly packets: bigint;
  readonly bytes: bigint;
  readonly srcIdentity: number;
  /** CtFlags bits */
  readonly flags: number;
}

export const ctKeyCodec = mappedCodec(
  structCodec(ctKeyLayout),
  (k: CtKey) => {
    const s = parseIp(k.src);
    const d = parseIp(k.dst);
    return {
      saddr: s.bytes,
      daddr: d.bytes,
      sport: k.sport,
      dport: k.dport,
      proto: k.proto,
      family: FamilyVersion[s.family],
      dir: k.direction === 'ingress' ? Direction.INGRESS : Direction.EGRESS,
    };
  },
  (s): CtKey => {
    const f = familyOfTag(s.family);
    return {
      src: formatIp(f, s.saddr),
      dst: formatIp(f, s.daddr),
      sport: s.sport,
      dport: s.dport,
      proto: s.proto,
      direction: s.dir === Direction.INGRESS ? 'ingress' : 'egress',
    };
  },
);

export const ctEntryCodec = mappedCodec(
  structCodec(ctEntryLayout),
  (v: CtEntry) => ({
    expires_ns: v.expiresNs,
    packets: v.packets,
    bytes: v.bytes,
    src_identity: v.srcIdentity,
    flags: v.flags,
  }),
  (s): CtEntry => ({
    expiresNs: s.expires_ns,
    packets: s.packets,
    bytes: s.bytes,
    srcIdentity: s.src_identity,
    flags: s.flags,
  }),
);

export const conntrackCodec: MapCodec<CtKey, CtEntry> = mapCodec(ctKeyCodec, ctEntryCodec);

/** The datapath's clock (bpf_ktime_get_ns is CLOCK_MONOTONIC, as is process.hrtime). */
export function monotonicNs(): bigint {
  return process.hrtime.bigint();
}

/**
 * Deletes conntrack entries whose idle deadline has passed. The datapath already treats them
 * as gone on lookup; sweeping frees their slots for the agent's periodic GC. Returns how many
 * were removed.
 */
export function sweepConntrack(map: BpfMap<CtKey, CtEntry>, nowNs: bigint = monotonicNs()): number {
  const expired: CtKey[] = [];
  for (const [k, v] of map.entries()) if (v.expiresNs < nowNs) expired.push(k);
  let n = 0;
  for (const k of expired) if (map.delete(k)) n++;
  return n;
}

/** Map type of an endpoint's table (struct dy_ct_table in bpf/lib/maps.h). */
export const CT_TABLE_TYPE = MapType.LRU_HASH;

/** Entries of an endpoint's table unless the agent says otherwise (DY_CT_ENDPOINT_ENTRIES). */
export const CT_TABLE_ENTRIES_DEFAULT = 8192;

/**
 * dy_conntrack: endpoint id -> that endpoint's own LRU hash of flows (struct dy_ct_table in
 * bpf/lib/maps.h), so one pod's flows only ever evict its own. The datapath tracks nothing for
 * an endpoint without a table, so whoever writes an endpoint creates its table first (ensure)
 * and removes it with the endpoint. A table lives as long as the outer map refers to it.
 */
export class ConntrackTables implements Disposable {
  /** The outer map: endpoint id -> inner map (fd on update, kernel map id on lookup). */
  readonly map: BpfMap<number, number>;
  /** Entries of each table ensure() creates. */
  readonly entriesPerTable: number;
  readonly #lib: Libbpf;

  constructor(
    lib: Libbpf,
    outer: BpfMap<number, number>,
    entriesPerTable: number = CT_TABLE_ENTRIES_DEFAULT,
  ) {
    this.#lib = lib;
    this.map = outer;
    this.entriesPerTable = entriesPerTable;
  }

  /** Creates the endpoint's table unless it has one. Returns true when it created it. */
  ensure(endpointId: number, maxEntries: number = this.entriesPerTable): boolean {
    if (this.map.lookup(endpointId) !== undefined) return false;
    using table = this.#lib.createMap(
      {
        type: CT_TABLE_TYPE,
        name: 'dy_ct_ep',
        keySize: ctKeyLayout.size,
        valueSize: ctEntryLayout.size,
        maxEntries,
      },
      conntrackCodec,
    );
    this.map.update(endpointId, table.fd);
    return true;
  }

  /** Drops the endpoint's table and every flow in it. */
  remove(endpointId: number): boolean {
    return this.map.delete(endpointId);
  }

  endpointIds(): number[] {
    return [...this.map.keys()];
  }

  /** The endpoint's table, opened by id; the caller closes it. */
  open(endpointId: number): BpfMap<CtKey, CtEntry> | undefined {
    const id = this.map.lookup(endpointId);
    if (id === undefined) return undefined;
    try {
      return this.#lib.openMapById(id, conntrackCodec);
    } catch {
      return undefined; // removed meanwhile
    }
  }

  /** Every flow of every endpoint, with the endpoint id. */
  *byEndpoint(): Generator<[number, CtKey, CtEntry]> {
    for (const ep of this.endpointIds()) {
      using table = this.open(ep);
      if (!table) continue;
      for (const [k, v] of table.entries()) yield [ep, k, v];
    }
  }

  /** Every flow of every endpoint. */
  *entries(): Generator<[CtKey, CtEntry]> {
    for (const [, k, v] of this.byEndpoint()) yield [k, v];
  }

  *keys(): Generator<CtKey> {
    for (const [, k] of this.byEndpoint()) yield k;
  }

  /** sweepConntrack over every endpoint's table. */
  sweep(nowNs: bigint = monotonicNs()): number {
    let n = 0;
    for (const ep of this.endpointIds()) {
      using table = this.open(ep);
      if (table) n += sweepConntrack(table, nowNs);
    }
    return n;
  }

  close(): void {
    this.map.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
