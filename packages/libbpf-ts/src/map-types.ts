/** Kernel map type numbers (enum bpf_map_type) this package names. */
export const MapType = {
  HASH: 1,
  ARRAY: 2,
  PERCPU_HASH: 5,
  PERCPU_ARRAY: 6,
  LRU_HASH: 9,
  LRU_PERCPU_HASH: 10,
  LPM_TRIE: 11,
  HASH_OF_MAPS: 13,
  RINGBUF: 27,
} as const;

export function isPerCpu(type: number): boolean {
  return (
    type === MapType.PERCPU_HASH ||
    type === MapType.PERCPU_ARRAY ||
    type === MapType.LRU_PERCPU_HASH
  );
}

/** bpf_map_update_elem flags. */
export const UpdateFlags = { ANY: 0, NOEXIST: 1, EXIST: 2 } as const;
export type UpdateMode = 'any' | 'noexist' | 'exist';

export function updateFlag(mode: UpdateMode): bigint {
  return BigInt(
    mode === 'any' ? UpdateFlags.ANY : mode === 'noexist' ? UpdateFlags.NOEXIST : UpdateFlags.EXIST,
  );
}

export interface MapInfo {
  readonly name: string;
  /** Kernel map id; 0 when read from an object before load. */
  readonly id: number;
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
}
