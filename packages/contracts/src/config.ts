import { Family, parsePrefixStrict } from '@dyad/netaddr';
import { z } from 'zod';
import { FamilySchema, prefixProblem } from './family.ts';

/**
 * The `dyad-config` ConfigMap: the cluster-wide settings every Dyad service gets mounted (one
 * file per key, as Kubernetes mounts a ConfigMap). Defined once, here: the Helm chart in deploy/
 * renders it and its tests parse the rendered ConfigMap with `DyadConfig`, so a key renamed on
 * one side and not the other fails a test.
 *
 * Keys are Cilium's where Cilium has one (`enable-ipv4`, `cluster-pool-ipv4-cidr`, ...), so its
 * users find what they know. Values are strings, as a ConfigMap holds them. This schema checks
 * shape and the rules that need no arithmetic; ipam refuses the rest at start (overlapping pools,
 * a mask size not longer than a pool's prefix), naming the key.
 */
export const DYAD_CONFIG_MAP = 'dyad-config';

/** Where every Dyad container finds the ConfigMap's files (the chart mounts it there). */
export const DYAD_CONFIG_DIR = '/etc/dyad/config';

export const DyadConfigKey = {
  enableIPv4: 'enable-ipv4',
  enableIPv6: 'enable-ipv6',
  /** Pools of one family, separated by spaces or commas; node blocks are carved in this order. */
  ipv4PoolCidr: 'cluster-pool-ipv4-cidr',
  ipv6PoolCidr: 'cluster-pool-ipv6-cidr',
  /** Prefix length of one node's block. */
  ipv4MaskSize: 'cluster-pool-ipv4-mask-size',
  ipv6MaskSize: 'cluster-pool-ipv6-mask-size',
  /** Dyad's own: the family listed first in a pod's addresses (ConfigMap keys have no order). */
  primaryFamily: 'ipam-primary-family',
  /**
   * Dyad's own: the replica count of Dyad's JetStream streams and KV buckets (3 with the chart's
   * 3-server NATS, so a stream survives the loss of one server). At most the number of servers.
   */
  jetstreamReplicas: 'jetstream-replicas',
  /**
   * Dyad's own: `production` makes every service refuse to connect to NATS without credentials
   * (the no-auth mode is for unit and integration tests, which run nats-server open); `test` or
   * absent allows it.
   */
  environment: 'environment',
} as const;
export type DyadConfigKey = (typeof DyadConfigKey)[keyof typeof DyadConfigKey];

export const ALL_DYAD_CONFIG_KEYS: readonly DyadConfigKey[] = Object.values(DyadConfigKey);

const Bool = z.enum(['true', 'false']);
const Digits = (min: number, max: number) =>
  z
    .string()
    .regex(/^[0-9]{1,3}$/, 'a decimal number')
    .refine((s) => Number(s) >= min && Number(s) <= max, `between ${min} and ${max}`);

/** One or more CIDRs of one family, separated by spaces or commas; netaddr's strict reading. */
const cidrList = (family: Family) =>
  z.string().superRefine((text, ctx) => {
    const items = text.split(/[\s,]+/).filter((s) => s !== '');
    if (items.length === 0) ctx.addIssue({ code: 'custom', message: `no ${family} CIDR` });
    for (const item of items) {
      const problem = prefixProblem(item, parsePrefixStrict, family);
      if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
    }
  });

const FAMILY_KEYS = [
  {
    family: Family.IPv4,
    enable: DyadConfigKey.enableIPv4,
    cidr: DyadConfigKey.ipv4PoolCidr,
    mask: DyadConfigKey.ipv4MaskSize,
  },
  {
    family: Family.IPv6,
    enable: DyadConfigKey.enableIPv6,
    cidr: DyadConfigKey.ipv6PoolCidr,
    mask: DyadConfigKey.ipv6MaskSize,
  },
] as const;

/**
 * The ConfigMap's `data`. Strict: a key it does not know is refused, so a typo or a key renamed
 * in the chart alone fails instead of being ignored. An enabled family needs its pool and mask
 * size; the primary family must be enabled; at least one family must be.
 */
export const DyadConfig = z
  .strictObject({
    [DyadConfigKey.enableIPv4]: Bool,
    [DyadConfigKey.enableIPv6]: Bool,
    [DyadConfigKey.ipv4PoolCidr]: cidrList(Family.IPv4).optional(),
    [DyadConfigKey.ipv6PoolCidr]: cidrList(Family.IPv6).optional(),
    // /30 and /126 are the longest blocks that leave a pod address (ipam reserves the rest).
    [DyadConfigKey.ipv4MaskSize]: Digits(1, 30).optional(),
    [DyadConfigKey.ipv6MaskSize]: Digits(1, 126).optional(),
    [DyadConfigKey.primaryFamily]: FamilySchema,
    [DyadConfigKey.jetstreamReplicas]: Digits(1, 5),
    [DyadConfigKey.environment]: z.enum(['production', 'test']).optional(),
  })
  .superRefine((cfg, ctx) => {
    const enabled = { IPv4: cfg['enable-ipv4'] === 'true', IPv6: cfg['enable-ipv6'] === 'true' };
    if (!enabled.IPv4 && !enabled.IPv6) {
      ctx.addIssue({
        code: 'custom',
        path: [DyadConfigKey.enableIPv4],
        message: 'enable-ipv4 and enable-ipv6 are both false: enable at least one family',
      });
    }
    for (const k of FAMILY_KEYS) {
      if (!enabled[k.family]) continue;
      for (const key of [k.cidr, k.mask]) {
        if (cfg[key] === undefined) {
          ctx.addIssue({
            code: 'custom',
            path: [key],
            message: `required when ${k.enable} is true`,
          });
        }
      }
    }
    const primary = cfg[DyadConfigKey.primaryFamily];
    if (!enabled[primary]) {
      ctx.addIssue({
        code: 'custom',
        path: [DyadConfigKey.primaryFamily],
        message: `${primary} is not enabled`,
      });
    }
  });
export type DyadConfigValue = z.infer<typeof DyadConfig>;

/** Every problem of a ConfigMap's data, one line each naming its key; empty when it is valid. */
export function dyadConfigProblems(data: unknown): string[] {
  const r = DyadConfig.safeParse(data);
  if (r.success) return [];
  return r.error.issues.map((i) => {
    if (i.code === 'unrecognized_keys') return `unknown key(s): ${i.keys.join(', ')}`;
    const where = i.path.length > 0 ? i.path.join('.') : '(data)';
    return `${where}: ${i.message}`;
  });
}
