import type { Family } from '@dyad/netaddr';
import type { IpamClusterConfigValue } from '@dyad/contracts';
import { formatCidr, tryCidrValue } from './addr.ts';
import { blockIndexOf } from './carve.ts';
import type { IpamConfig } from './config.ts';
import { ConfigKey, layoutOf } from './config.ts';

/**
 * Whether a configuration can take over the state other replicas (or an earlier configuration)
 * left in the bucket. Pure. The rule: every block a node holds must still be a block of the new
 * configuration. So adding a pool, enabling a family or changing the primary family is fine;
 * switching off a family, changing its mask size or dropping a pool while nodes hold blocks
 * from it is refused, naming the key.
 */
export function compatibilityProblems(
  cfg: IpamConfig,
  claims: readonly { readonly family: Family; readonly cidr: string }[],
): string[] {
  const byKey = new Map<string, { what: string; examples: string[] }>();
  const note = (key: string, what: string, example: string): void => {
    const e = byKey.get(key) ?? { what, examples: [] };
    if (e.examples.length < 3) e.examples.push(example);
    byKey.set(key, e);
  };
  for (const c of claims) {
    const enableKey = c.family === 'IPv4' ? ConfigKey.enableIPv4 : ConfigKey.enableIPv6;
    const cidrKey = c.family === 'IPv4' ? ConfigKey.v4Cidr : ConfigKey.v6Cidr;
    const maskKey = c.family === 'IPv4' ? ConfigKey.v4MaskSize : ConfigKey.v6MaskSize;
    const layout = layoutOf(cfg, c.family);
    if (layout === undefined) {
      note(
        enableKey,
        `is false, but nodes hold ${c.family} blocks; switching a family off would strand its pods' addresses (set it back to true, or delete those nodes first and let their blocks return to the pool)`,
        c.cidr,
      );
      continue;
    }
    const p = tryCidrValue(c.cidr);
    if (p === undefined) continue;
    if (p.prefix !== layout.maskSize) {
      note(
        maskKey,
        `is ${layout.maskSize}, but nodes hold /${p.prefix} blocks; a block size cannot change while nodes hold blocks`,
        c.cidr,
      );
      continue;
    }
    if (blockIndexOf(layout, p) === undefined) {
      note(
        cidrKey,
        `no longer lists the pool of blocks nodes hold (${layout.pools.map(formatCidr).join(', ')} listed); a pool cannot be removed while nodes hold blocks from it`,
        c.cidr,
      );
    }
  }
  return [...byKey].map(([key, e]) => `${key} ${e.what} (e.g. ${e.examples.join(', ')})`);
}

export function clusterConfigRecord(cfg: IpamConfig): IpamClusterConfigValue {
  return {
    v: 1,
    families: cfg.families.map((l) => ({
      family: l.family,
      cidrs: l.pools.map(formatCidr),
      maskSize: l.maskSize,
    })),
  };
}
