import {
  encode,
  endpointsCodec,
  ipcacheCodec,
  policyCidrCodec,
  policyCodec,
} from '@dyad/libbpf-ts';
import type { DatapathMapSet, MapCodec } from '@dyad/libbpf-ts';
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

/** Missing, extra (unless `mayKeep`) or different entries, by their encoded bytes. */
function differing<K, V>(
  codec: MapCodec<K, V>,
  want: Iterable<readonly [K, V]>,
  have: Iterable<[K, V]>,
  mayKeep: (k: K) => boolean,
): number {
  const wanted = new Map<string, string>();
  for (const [k, v] of want)
    wanted.set(encode(codec.key, k).toString('hex'), encode(codec.value, v).toString('hex'));
  let diff = 0;
  const seen = new Set<string>();
  for (const [k, v] of have) {
    const key = encode(codec.key, k).toString('hex');
    const value = wanted.get(key);
    if (value === undefined) {
      if (!mayKeep(k)) diff++;
      continue;
    }
    seen.add(key);
    if (value !== encode(codec.value, v).toString('hex')) diff++;
  }
  for (const key of wanted.keys()) if (!seen.has(key)) diff++;
  return diff;
}
