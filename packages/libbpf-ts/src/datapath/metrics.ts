import { mapCodec, mappedCodec, structCodec } from '../codec.ts';
import type { MapCodec } from '../codec.ts';
import { defineLayout } from '../layout.ts';

/** bpf/include/dyad/map_metrics.h */
export const metricsKeyLayout = defineLayout('dy_metrics_key', 4, [
  { name: 'reason', offset: 0, kind: 'u8' },
  { name: 'dir', offset: 1, kind: 'u8' },
  { name: 'family', offset: 2, kind: 'u8' },
  { name: 'pad', offset: 3, kind: 'pad', length: 1 },
] as const);

export const metricsValueLayout = defineLayout('dy_metrics_value', 16, [
  { name: 'packets', offset: 0, kind: 'u64' },
  { name: 'bytes', offset: 8, kind: 'u64' },
] as const);

export interface MetricsKey {
  /** Reason */
  readonly reason: number;
  /** Direction */
  readonly direction: number;
  /** 4, 6, or 0 for non-IP */
  readonly family: number;
}

export interface MetricsValue {
  readonly packets: bigint;
  readonly bytes: bigint;
}

export const metricsKeyCodec = mappedCodec(
  structCodec(metricsKeyLayout),
  (k: MetricsKey) => ({ reason: k.reason, dir: k.direction, family: k.family }),
  (s): MetricsKey => ({ reason: s.reason, direction: s.dir, family: s.family }),
);

export const metricsValueCodec = structCodec(metricsValueLayout);

export const metricsCodec: MapCodec<MetricsKey, MetricsValue> = mapCodec(
  metricsKeyCodec,
  metricsValueCodec,
);

/** Sums a per-CPU counter. */
export function sumPerCpu(values: readonly MetricsValue[]): MetricsValue {
  return values.reduce((a, v) => ({ packets: a.packets + v.packets, bytes: a.bytes + v.bytes }), {
    packets: 0n,
    bytes: 0n,
  });
}
