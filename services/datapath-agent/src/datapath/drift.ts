import { endpointsCodec, ipcacheCodec, policyCidrCodec, policyCodec } from '@dyad/libbpf-ts';
import type { DatapathMapSet, MapCodec } from '@dyad/libbpf-ts';
import { ByteTable } from './byte-table.ts';
import type { DesiredMaps } from './desired-maps.ts';

/** Per map: entries the kernel holds that desiredMaps() does not (or with another value), plus those it lacks. */
export interface MapDrift {
  readonly endpoints: number;
  readonly ipcache: number;
  readonly policy: number;
  readonly policyCidr: number;
}

type KernelMaps = Pick<DatapathMapSet, 'endpoints' | 'ipcache' | 'policy' | 'policyCidr'>;

/**
 * How far the node's maps are from its desired state, compared byte for byte as the kernel holds
 * them. What the reconciler deliberately leaves is not drift: the entries of a live endpoint whose
 * policy is not known yet, and other nodes' ipcache entries while the router has not spoken.
 * Right after a change the reconciler's quiet period makes this briefly non-zero; a node whose
 * maps stay non-zero has lost a write or kept a stale entry.
 */
export function mapDrift(
  want: DesiredMaps,
  kernel: KernelMaps,
  live: ReadonlySet<number>,
): MapDrift {
  const keptPolicy = (k: { endpointId: number }): boolean =>
    live.has(k.endpointId) && !want.policyKnown.has(k.endpointId);
  return {
    endpoints: differing(endpointsCodec, want.endpoints, kernel.endpoints.entries(), () => false),
    ipcache: differing(
      ipcacheCodec,
      want.ipcache,
      kernel.ipcache.entries(),
      () => !want.ipcacheComplete,
    ),
    policy: differing(policyCodec, want.policy, kernel.policy.entries(), keptPolicy),
    policyCidr: differing(
      policyCidrCodec,
      want.policyCidr,
      kernel.policyCidr.entries(),
      keptPolicy,
    ),
  };
}

/**
 * Missing, extra (unless `mayKeep`) or different entries, by their encoded bytes, held in a
 * ByteTable: the ipcache is cluster-sized, and `dyad status` asks for this.
 */
function differing<K, V>(
  codec: MapCodec<K, V>,
  want: Iterable<readonly [K, V]>,
  have: Iterable<[K, V]>,
  mayKeep: (k: K) => boolean,
): number {
  const key = Buffer.alloc(codec.key.size);
  const value = Buffer.alloc(codec.value.size);
  // each wanted entry's value, and one byte more: 1 once the kernel was seen to hold the key
  const wanted = new ByteTable(codec.key.size, codec.value.size + 1);
  const row = new Uint8Array(codec.value.size + 1);
  const put = (buf: Buffer, write: (b: Buffer) => void) => {
    buf.fill(0); // as encode() would: no byte of an earlier entry left
    write(buf);
  };
  for (const [k, v] of want) {
    put(key, (b) => codec.key.encodeInto(k, b, 0));
    put(value, (b) => codec.value.encodeInto(v, b, 0));
    row.set(value, 0);
    wanted.set(key, row);
  }
  let diff = 0;
  let seen = 0;
  for (const [k, v] of have) {
    put(key, (b) => codec.key.encodeInto(k, b, 0));
    const s = wanted.find(key);
    if (s < 0) {
      if (!mayKeep(k)) diff++;
      continue;
    }
    const w = wanted.valueAt(s);
    if (w[codec.value.size] === 0) seen++;
    w[codec.value.size] = 1;
    put(value, (b) => codec.value.encodeInto(v, b, 0));
    if (!value.equals(w.subarray(0, codec.value.size))) diff++;
  }
  return diff + (wanted.size - seen);
}
