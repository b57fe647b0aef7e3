import { ReservedIdentity } from '@dyad/contracts';

const POD_IDENTITY_SPACE = 0x0100_0000 - ReservedIdentity.firstPod;

/**
 * Placeholder pod identity until a policy service assigns identities from labels: a stable hash
 * of `namespace/name` in [0x10000, 0xFFFFFF]. Stable across router restarts and pod re-creation
 * under the same name; distinct pods may collide (about 1 in 16 M per pair), which only matters
 * once policy reads identities, and by then the policy service owns them.
 */
export function placeholderIdentity(namespace: string, name: string): number {
  // FNV-1a, 32 bit.
  let h = 0x811c9dc5;
  const text = `${namespace}/${name}`;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return ReservedIdentity.firstPod + (h % POD_IDENTITY_SPACE);
}
