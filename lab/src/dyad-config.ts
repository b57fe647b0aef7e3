import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DyadConfig, DyadConfigKey } from '@dyad/contracts';
import { NATS_CLUSTER_SIZE } from './nats-cluster.ts';
import type { LabPlan } from './plan.ts';

/** The lab's dyad-config ConfigMap data, checked by the schema the chart's is checked with. */
export function dyadConfigOf(plan: LabPlan): Record<string, string> {
  const v4 = plan.podPools.IPv4;
  const v6 = plan.podPools.IPv6;
  const data: Record<string, string> = {
    [DyadConfigKey.enableIPv4]: String(plan.options.ipv4),
    [DyadConfigKey.enableIPv6]: String(plan.options.ipv6),
    ...(v4 === undefined
      ? {}
      : {
          [DyadConfigKey.ipv4PoolCidr]: v4.cidr,
          [DyadConfigKey.ipv4MaskSize]: String(v4.maskSize),
        }),
    ...(v6 === undefined
      ? {}
      : {
          [DyadConfigKey.ipv6PoolCidr]: v6.cidr,
          [DyadConfigKey.ipv6MaskSize]: String(v6.maskSize),
        }),
    [DyadConfigKey.primaryFamily]: plan.families[0] ?? 'IPv4',
    // R3: every stream and bucket survives the loss of any one server
    [DyadConfigKey.jetstreamReplicas]: String(NATS_CLUSTER_SIZE),
  };
  DyadConfig.parse(data);
  return data;
}

/** Writes it one file per key, as Kubernetes mounts a ConfigMap. */
export function writeDyadConfig(dir: string, plan: LabPlan): void {
  mkdirSync(dir, { recursive: true });
  for (const [key, value] of Object.entries(dyadConfigOf(plan)))
    writeFileSync(join(dir, key), value);
}
