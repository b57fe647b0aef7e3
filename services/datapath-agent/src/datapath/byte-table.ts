/**
 * A hash table of fixed-size byte keys to fixed-size byte values, held in three typed arrays: no
 * JavaScript object per entry. The agent keeps its cluster-sized state in these (the router's
 * entries, the pods behind addresses), so 100,000 entries cost a few MiB and no garbage
 * collector work. Open addressing with linear probing; it doubles at 80 % use (short keys make
 * the longer probes cheap) and shrinks when under 1/8 full, so its size follows what it holds.
 */
const EMPTY = 0;
const FULL = 1;
const GONE = 2;
const MIN_SLOTS = 16;

export class ByteTable {
  readonly keySize: number;
  readonly valueSize: number;
  #state: Uint8Array;
  #keys: Uint8Array;
  #values: Uint8Array;
  #size = 0;
  /** Full and gone slots: probing stops only at an empty one. */
  #used = 0;

  constructor(keySize: number, valueSize: number) {
    if (keySize <= 0) throw new RangeError('ByteTable: key size must be positive');
    this.keySize = keySize;
    this.valueSize = valueSize;
    this.#state = new Uint8Array(MIN_SLOTS);
    this.#keys = new Uint8Array(MIN_SLOTS * keySize);
    this.#values = new Uint8Array(MIN_SLOTS * valueSize);
  }

  get size(): number {
    return this.#size;
  }

  /** Bytes held by the arrays. */
  get bytes(): number {
    return this.#state.byteLength + this.#keys.byteLength + this.#values.byteLength;
  }

  #hash(key: Uint8Array, at: number): number {
    let h = 0x811c9dc5;
    for (let i = 0; i < this.keySize; i++) h = Math.imul(h ^ (key[at + i] ?? 0), 0x01000193);
    return h >>> 0;
  }

  #equals(slot: number, key: Uint8Array, at: number): boolean {
    const base = slot * this.keySize;
    for (let i = 0; i < this.keySize; i++) if (this.#keys[base + i] !== key[at + i]) return false;
    return true;
  }

  /** The slot holding `key` (its first keySize bytes from `at`), or -1. */
  find(key: Uint8Array, at = 0): number {
    const mask = this.#state.length - 1;
    for (let s = this.#hash(key, at) & mask; ; s = (s + 1) & mask) {
      const st = this.#state[s];
      if (st === EMPTY) return -1;
      if (st === FULL && this.#equals(s, key, at)) return s;
    }
  }

  has(key: Uint8Array, at = 0): boolean {
    return this.find(key, at) >= 0;
  }

  /** A copy of the value of `key`, or undefined. */
  get(key: Uint8Array, at = 0): Uint8Array | undefined {
    const s = this.find(key, at);
    return s < 0 ? undefined : this.valueAt(s).slice();
  }

  /** Whether `key` holds exactly `value`. */
  holds(key: Uint8Array, value: Uint8Array): boolean {
    const s = this.find(key);
    if (s < 0) return false;
    const base = s * this.valueSize;
    for (let i = 0; i < this.valueSize; i++) if (this.#values[base + i] !== value[i]) return false;
    return true;
  }

  set(key: Uint8Array, value: Uint8Array, keyAt = 0, valueAt = 0): void {
    if (value.length - valueAt < this.valueSize) throw new RangeError('ByteTable: short value');
    let s = this.find(key, keyAt);
    if (s < 0) {
      if ((this.#used + 1) * 10 > this.#state.length * 8) this.#resize(this.#size + 1);
      s = this.#insertSlot(key, keyAt);
    }
    this.#values.set(value.subarray(valueAt, valueAt + this.valueSize), s * this.valueSize);
  }

  delete(key: Uint8Array, at = 0): boolean {
    const s = this.find(key, at);
    if (s < 0) return false;
    this.#state[s] = GONE;
    this.#size--;
    if (this.#size * 8 < this.#state.length && this.#state.length > MIN_SLOTS)
      this.#resize(this.#size);
    return true;
  }

  clear(): void {
    this.#state = new Uint8Array(MIN_SLOTS);
    this.#keys = new Uint8Array(MIN_SLOTS * this.keySize);
    this.#values = new Uint8Array(MIN_SLOTS * this.valueSize);
    this.#size = 0;
    this.#used = 0;
  }

  /** The slots that hold an entry. The table must not change while they are read. */
  *slots(): Generator<number> {
    for (let s = 0; s < this.#state.length; s++) if (this.#state[s] === FULL) yield s;
  }

  /** A view of a slot's key; valid until the table changes. */
  keyAt(slot: number): Uint8Array {
    return this.#keys.subarray(slot * this.keySize, (slot + 1) * this.keySize);
  }

  /** A view of a slot's value; valid until the table changes. */
  valueAt(slot: number): Uint8Array {
    return this.#values.subarray(slot * this.valueSize, (slot + 1) * this.valueSize);
  }

  #insertSlot(key: Uint8Array, at: number): number {
    const mask = this.#state.length - 1;
    let s = this.#hash(key, at) & mask;
    while (this.#state[s] === FULL) s = (s + 1) & mask;
    if (this.#state[s] === EMPTY) this.#used++;
    this.#state[s] = FULL;
    this.#keys.set(key.subarray(at, at + this.keySize), s * this.keySize);
    this.#size++;
    return s;
  }

  /**
   * Rehashes into the smallest power of two that keeps `entries` at or under 50 % use: a table
   * that grew holds 40-80 % (100,000 entries: 131,072 slots; a 40 % target made it 262,144, twice
   * the memory of the cluster-sized state).
   */
  #resize(entries: number): void {
    let slots = MIN_SLOTS;
    while (slots < entries * 2) slots *= 2;
    const state = this.#state;
    const keys = this.#keys;
    const values = this.#values;
    this.#state = new Uint8Array(slots);
    this.#keys = new Uint8Array(slots * this.keySize);
    this.#values = new Uint8Array(slots * this.valueSize);
    this.#size = 0;
    this.#used = 0;
    for (let s = 0; s < state.length; s++) {
      if (state[s] !== FULL) continue;
      const n = this.#insertSlot(keys, s * this.keySize);
      this.#values.set(
        values.subarray(s * this.valueSize, (s + 1) * this.valueSize),
        n * this.valueSize,
      );
    }
  }
}
