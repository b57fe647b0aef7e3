// The agent's operator metrics from what it holds: datapath drops summed over CPUs by reason,
// direction and family, map fill, pod address use per family.
import { Reason } from '@dyad/libbpf-ts';
import type { MetricsKey, MetricsValue } from '@dyad/libbpf-ts';
import { createMetrics } from '@dyad/telemetry';
import { describe, expect, it } from 'vitest';
import type { EndpointManager } from '../src/endpoint-manager.ts';
import type { NodeDatapath } from '../src/datapath/node.ts';
import type { NodeAllocator } from '../src/ipam/allocator.ts';
import { createAgentMetrics } from '../src/metrics.ts';

const v = (packets: number, bytes: number): MetricsValue => ({
  packets: BigInt(packets),
  bytes: BigInt(bytes),
});

// Per-CPU values as the kernel keeps them (Direction: 1 egress, 2 ingress).
const counters = new Map<MetricsKey, MetricsValue[]>([
  [{ reason: Reason.FORWARDED, direction: 1, family: 4 }, [v(100, 9000), v(50, 4000)]],
  [{ reason: Reason.DROP_POLICY, direction: 2, family: 6 }, [v(2, 160), v(1, 80)]],
  [{ reason: Reason.DROP_POLICY, direction: 2, family: 4 }, [v(4, 240), v(0, 0)]],
  [{ reason: Reason.DROP_CT_FULL, direction: 1, family: 4 }, [v(0, 0), v(7, 700)]],
]);

const mirror = (size: number, maxEntries: number) => ({ size, map: { info: { maxEntries } } });

const datapath = {
  endpoints: mirror(3, 1024),
  ipcache: mirror(40, 65536),
  policy: mirror(0, 16384),
  policyCidr: mirror(2, 16384),
  stats: () => ({}),
  loaded: {
    maps: {
      metrics: {
        keys: () => counters.keys(),
        lookupPerCpu: (k: MetricsKey) => counters.get(k),
      },
    },
  },
} as unknown as NodeDatapath;

const agent = { endpoints: () => [] } as unknown as EndpointManager;

const allocator = {
  blocks: () => ({
    capacity: 253,
    sets: [
      {
        blocks: [
          { family: 'IPv4', cidr: '198.18.1.0/24', gateway: '198.18.1.1' },
          { family: 'IPv6', cidr: 'fd00:18:1::/120', gateway: 'fd00:18:1::1' },
        ],
      },
    ],
  }),
  capacity: () => 253,
  holders: () => [{ slot: 2 }, { slot: 3 }],
  // one holder asked for IPv4 only
  addressesOf: (h: { slot: number }) =>
    h.slot === 2 ? [{ family: 'IPv4' }, { family: 'IPv6' }] : [{ family: 'IPv4' }],
} as unknown as NodeAllocator;

async function scrape(): Promise<string> {
  const registry = createMetrics({ processMetrics: false });
  createAgentMetrics(registry, agent, datapath, allocator, 'node-1');
  return registry.metrics();
}

describe('agent metrics', () => {
  it('counts datapath drops by reason, direction and family, summed over CPUs; not forwards', async () => {
    const text = await scrape();
    expect(text).toContain(
      'dyad_datapath_drops_total{reason="DROP_POLICY",direction="ingress",family="IPv6"} 3',
    );
    expect(text).toContain(
      'dyad_datapath_drops_total{reason="DROP_POLICY",direction="ingress",family="IPv4"} 4',
    );
    expect(text).toContain(
      'dyad_datapath_drops_total{reason="DROP_CT_FULL",direction="egress",family="IPv4"} 7',
    );
    expect(text).toContain(
      'dyad_datapath_dropped_bytes_total{reason="DROP_POLICY",direction="ingress",family="IPv6"} 240',
    );
    expect(text).not.toContain('reason="FORWARDED"');
  });

  it('reports map fill as entries and capacity per map', async () => {
    const text = await scrape();
    expect(text).toContain('dyad_agent_map_entries{map="ipcache"} 40');
    expect(text).toContain('dyad_agent_map_capacity{map="ipcache"} 65536');
    expect(text).toContain('dyad_agent_map_entries{map="policyCidr"} 2');
  });

  it('reports pod address use per node and family', async () => {
    const text = await scrape();
    expect(text).toContain('dyad_agent_pod_addresses{node="node-1",family="IPv4",state="used"} 2');
    expect(text).toContain('dyad_agent_pod_addresses{node="node-1",family="IPv6",state="used"} 1');
    expect(text).toContain(
      'dyad_agent_pod_addresses{node="node-1",family="IPv6",state="capacity"} 253',
    );
  });
});
