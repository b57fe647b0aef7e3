import type { BpfMap, MapCodec } from '@dyad/libbpf-ts';

/** Calls that changed a fake map, as the kernel would count syscalls. */
export interface FakeMapCalls {
  updateBatch: number;
  deleteBatch: number;
  entriesWritten: number;
}

/**
 * An in-memory stand-in for a BPF hash or LPM map with the codec of the real one: keys are
 * their encoded bytes, so two spellings of one address are one key, as in the kernel.
 */
export function fakeMap<K, V>(codec: MapCodec<K, V>) {
  const store = new Map<string, Buffer>();
  const calls: FakeMapCalls = { updateBatch: 0, deleteBatch: 0, entriesWritten: 0 };
  const kb = Buffer.alloc(codec.key.size);
  const vb = Buffer.alloc(codec.value.size);
  const id = (k: K) => {
    codec.key.encodeInto(k, kb, 0);
    return kb.toString('hex');
  };
  const map = {
    codec,
    updateBatch(entries: ReadonlyArray<readonly [K, V]>) {
      calls.updateBatch++;
      for (const [k, v] of entries) {
        codec.value.encodeInto(v, vb, 0);
        store.set(id(k), Buffer.from(vb));
        calls.entriesWritten++;
      }
    },
    deleteBatch(keys: readonly K[]) {
      calls.deleteBatch++;
      for (const k of keys) store.delete(id(k));
      return keys.length;
    },
    delete(k: K) {
      return store.delete(id(k));
    },
    lookup(k: K) {
      const v = store.get(id(k));
      return v ? codec.value.decode(v, 0) : undefined;
    },
    *keyBuffers(): Generator<Buffer> {
      for (const k of [...store.keys()]) yield Buffer.from(k, 'hex');
    },
    lookupRaw(key: Buffer, value: Buffer) {
      const v = store.get(key.toString('hex'));
      v?.copy(value);
      return v !== undefined;
    },
    *entries(): Generator<[K, V]> {
      for (const [k, v] of store)
        yield [codec.key.decode(Buffer.from(k, 'hex'), 0), codec.value.decode(v, 0)];
    },
  };
  return { map: map as unknown as BpfMap<K, V>, calls, store };
}
