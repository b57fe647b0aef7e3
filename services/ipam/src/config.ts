import type { CidrValue } from './addr.ts';
import { ADDRESS_BITS, AddressError, FAMILIES, Family, parsePrefixStrict } from '@dyad/netaddr';
import { cidrValue, cidrsOverlap, formatCidr } from './addr.ts';
import type { BlockLayout } from './carve.ts';
import { maxMaskSize } from './carve.ts';
import { IpamConfigError } from './errors.ts';

/**
 * IPAM configuration under the key names Cilium users know from their ConfigMap. Validation is
 * pure and reports every problem at once, each naming its key.
 */
export const ConfigKey = {
  enableIPv4: 'enable-ipv4',
  enableIPv6: 'enable-ipv6',
  v4Cidr: 'cluster-pool-ipv4-cidr',
  v6Cidr: 'cluster-pool-ipv6-cidr',
  v4MaskSize: 'cluster-pool-ipv4-mask-size',
  v6MaskSize: 'cluster-pool-ipv6-mask-size',
  /** Dyad's own key: which family comes first in a pod's addresses (ConfigMap keys have no order). */
  primaryFamily: 'ipam-primary-family',
} as const;
export type ConfigKey = (typeof ConfigKey)[keyof typeof ConfigKey];

export const ALL_CONFIG_KEYS: readonly ConfigKey[] = Object.values(ConfigKey);

/** As Cilium: IPv4 on, IPv6 off, /24 and /120 blocks. */
export const DEFAULTS = {
  [ConfigKey.enableIPv4]: 'true',
  [ConfigKey.enableIPv6]: 'false',
  [ConfigKey.v4MaskSize]: '24',
  [ConfigKey.v6MaskSize]: '120',
} as const;

export interface IpamConfig {
  /** Enabled families in order, primary first; each with its pools and block size. */
  readonly families: readonly BlockLayout[];
  /** Things ignored, worth a log line (a pool of a disabled family). */
  readonly warnings: readonly string[];
}

const KEYS: Readonly<
  Record<Family, { enable: ConfigKey; cidr: ConfigKey; mask: ConfigKey; other: ConfigKey }>
> = {
  IPv4: {
    enable: ConfigKey.enableIPv4,
    cidr: ConfigKey.v4Cidr,
    mask: ConfigKey.v4MaskSize,
    other: ConfigKey.v6Cidr,
  },
  IPv6: {
    enable: ConfigKey.enableIPv6,
    cidr: ConfigKey.v6Cidr,
    mask: ConfigKey.v6MaskSize,
    other: ConfigKey.v4Cidr,
  },
};

export type RawConfig = Readonly<Partial<Record<string, string>>>;

/** Validates ConfigMap-style keys into a config, or throws IpamConfigError listing every problem. */
export function parseIpamConfig(raw: RawConfig): IpamConfig {
  const problems: string[] = [];
  const warnings: string[] = [];
  const get = (k: ConfigKey): string | undefined => {
    const v = raw[k]?.trim();
    return v === undefined || v === '' ? (DEFAULTS as Partial<Record<string, string>>)[k] : v;
  };
  const bool = (k: ConfigKey): boolean => {
    const v = get(k)?.toLowerCase();
    if (v === 'true') return true;
    if (v === 'false') return false;
    problems.push(`${k}: expected true or false, got '${raw[k] ?? ''}'`);
    return false;
  };

  const enabled: Record<Family, boolean> = {
    IPv4: bool(ConfigKey.enableIPv4),
    IPv6: bool(ConfigKey.enableIPv6),
  };
  if (problems.length === 0 && !enabled.IPv4 && !enabled.IPv6) {
    problems.push(
      `${ConfigKey.enableIPv4} and ${ConfigKey.enableIPv6} are both false: enable at least one family`,
    );
  }

  const layouts = new Map<Family, BlockLayout>();
  for (const family of FAMILIES) {
    const keys = KEYS[family];
    const listed = (get(keys.cidr) ?? '').split(/[\s,]+/).filter((s) => s !== '');
    if (!enabled[family]) {
      if (listed.length > 0) {
        warnings.push(`${keys.cidr} is ignored: ${keys.enable} is false`);
      }
      continue;
    }
    if (listed.length === 0) {
      problems.push(`${keys.cidr}: required when ${keys.enable} is true`);
      continue;
    }
    const pools: CidrValue[] = [];
    for (const text of listed) {
      let p: CidrValue;
      try {
        p = cidrValue(parsePrefixStrict(text));
      } catch (err) {
        if (!(err instanceof AddressError)) throw err;
        problems.push(`${keys.cidr}: ${err.message}`);
        continue;
      }
      if (p.family !== family) {
        problems.push(`${keys.cidr}: ${text} is an ${p.family} CIDR; it belongs in ${keys.other}`);
        continue;
      }
      const clash = pools.find((q) => cidrsOverlap(q, p));
      if (clash !== undefined) {
        problems.push(`${keys.cidr}: ${text} overlaps ${formatCidr(clash)}`);
        continue;
      }
      pools.push(p);
    }
    const maskText = get(keys.mask) ?? '';
    const mask = /^[0-9]{1,3}$/.test(maskText) ? Number(maskText) : Number.NaN;
    if (Number.isNaN(mask) || mask > ADDRESS_BITS[family]) {
      problems.push(
        `${keys.mask}: '${maskText}' is not a prefix length (0-${ADDRESS_BITS[family]})`,
      );
      continue;
    }
    if (mask > maxMaskSize(family)) {
      const why =
        family === 'IPv4'
          ? 'network, gateway and broadcast addresses are reserved'
          : 'the subnet-router anycast and gateway addresses are reserved';
      problems.push(
        `${keys.mask}: /${mask} blocks leave no pod address (${why}); at most ${maxMaskSize(family)}`,
      );
      continue;
    }
    for (const p of pools) {
      if (mask <= p.prefix) {
        problems.push(
          `${keys.mask}: ${mask} is not longer than the prefix of pool ${formatCidr(p)} in ${keys.cidr}`,
        );
      }
    }
    layouts.set(family, { family, pools, maskSize: mask });
  }

  let order: readonly Family[] = FAMILIES;
  const primaryText = raw[ConfigKey.primaryFamily]?.trim();
  if (primaryText !== undefined && primaryText !== '') {
    const p = primaryText.toLowerCase();
    if (p === 'ipv6') order = [Family.IPv6, Family.IPv4];
    else if (p !== 'ipv4') {
      problems.push(`${ConfigKey.primaryFamily}: expected IPv4 or IPv6, got '${primaryText}'`);
    }
    const primary = order[0] as Family;
    if ((p === 'ipv4' || p === 'ipv6') && problems.length === 0 && !enabled[primary]) {
      problems.push(
        `${ConfigKey.primaryFamily}: ${primary} is not enabled (${KEYS[primary].enable} is false)`,
      );
    }
  }

  if (problems.length > 0) throw new IpamConfigError(problems);
  const families = order.flatMap((f) => {
    const l = layouts.get(f);
    return l === undefined ? [] : [l];
  });
  return { families, warnings };
}

export function layoutOf(cfg: IpamConfig, family: Family): BlockLayout | undefined {
  return cfg.families.find((l) => l.family === family);
}

/** Where a key comes from in the environment: `cluster-pool-ipv4-cidr` → `DYAD_CLUSTER_POOL_IPV4_CIDR`. */
export function envNameOf(key: ConfigKey): string {
  return `DYAD_${key.toUpperCase().replace(/-/g, '_')}`;
}

/**
 * The raw keys: files of a mounted ConfigMap directory (one file per key), overridden by
 * `DYAD_<KEY>` environment variables. Pure: the caller reads the directory.
 */
export function mergeConfigSources(
  env: Readonly<Record<string, string | undefined>>,
  dirFiles: Readonly<Record<string, string>> = {},
): RawConfig {
  const out: Record<string, string> = {};
  for (const key of ALL_CONFIG_KEYS) {
    const fromEnv = env[envNameOf(key)];
    const fromDir = dirFiles[key];
    if (fromEnv !== undefined) out[key] = fromEnv;
    else if (fromDir !== undefined) out[key] = fromDir;
  }
  return out;
}
