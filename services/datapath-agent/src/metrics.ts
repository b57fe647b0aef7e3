import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';
import { directionName, reasonName, sumPerCpu } from '@dyad/libbpf-ts';
import type { EndpointManager } from './endpoint-manager.ts';
import type { CniReply } from './cni/handler.ts';
import type { NodeDatapath } from './datapath/node.ts';
import type { NodeAllocator } from './ipam/allocator.ts';
import { nodeBlockList } from './ipam/blocks.ts';

/** Drop reasons start here in the datapath's Reason numbering (below: forwarded, passed, allowed). */
const FIRST_DROP_REASON = 10;

/** Reconciler passes, made before the reconciler so it can report into it. */
export function createReconcileHistogram(registry: Registry): Histogram<'kind'> {
  return new Histogram({
    name: 'dyad_agent_reconcile_seconds',
    help: 'Time of one reconciler pass (desired entries computed and written to the maps), by kind: full or partial',
    labelNames: ['kind'],
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5],
    registers: [registry],
  });
}

export interface AgentMetrics {
  observeCni(reply: CniReply, seconds: number): void;
}

/** Prometheus metrics of the agent; map write counters are read from the mirrors on scrape. */
export function createAgentMetrics(
  registry: Registry,
  agent: EndpointManager,
  datapath: NodeDatapath,
  allocator: NodeAllocator,
  node: string,
): AgentMetrics {
  const registers = [registry];
  new Gauge({
    name: 'dyad_agent_pod_addresses',
    help: "Pod addresses of this node's blocks by family and state: used (held by a container) or capacity",
    labelNames: ['node', 'family', 'state'],
    registers,
    collect() {
      this.reset();
      const families = new Set(nodeBlockList(allocator.blocks()).map((b) => b.family));
      const used = new Map<string, number>();
      for (const h of allocator.holders())
        for (const a of allocator.addressesOf(h)) used.set(a.family, (used.get(a.family) ?? 0) + 1);
      for (const family of families) {
        this.set({ node, family, state: 'capacity' }, allocator.capacity());
        this.set({ node, family, state: 'used' }, used.get(family) ?? 0);
      }
    },
  });
  const mirrors = {
    endpoints: datapath.endpoints,
    ipcache: datapath.ipcache,
    policy: datapath.policy,
    policyCidr: datapath.policyCidr,
  };
  new Gauge({
    name: 'dyad_agent_map_entries',
    help: 'Entries a datapath map holds (as the agent last wrote or read them)',
    labelNames: ['map'],
    registers,
    collect() {
      for (const [map, m] of Object.entries(mirrors)) this.set({ map }, m.size);
    },
  });
  new Gauge({
    name: 'dyad_agent_map_capacity',
    help: 'max_entries of a datapath map: entries over capacity is its fill',
    labelNames: ['map'],
    registers,
    collect() {
      for (const [map, m] of Object.entries(mirrors)) this.set({ map }, m.map.info.maxEntries);
    },
  });
  const dropCounter = (name: string, help: string, pick: 'packets' | 'bytes') =>
    new Counter({
      name,
      help,
      labelNames: ['reason', 'direction', 'family'],
      registers,
      collect() {
        // The kernel's per-CPU counters are the truth (they survive agent restarts): read, summed.
        this.reset();
        const m = datapath.loaded.maps.metrics;
        for (const key of m.keys()) {
          if (key.reason < FIRST_DROP_REASON) continue;
          const v = m.lookupPerCpu(key);
          if (v === undefined) continue;
          this.inc(
            {
              reason: reasonName(key.reason),
              direction: directionName(key.direction) ?? String(key.direction),
              family: key.family === 4 ? 'IPv4' : key.family === 6 ? 'IPv6' : 'other',
            },
            Number(sumPerCpu(v)[pick]),
          );
        }
      },
    });
  dropCounter(
    'dyad_datapath_drops_total',
    'Packets the datapath dropped on this node, by reason, direction and family (dy_metrics)',
    'packets',
  );
  dropCounter(
    'dyad_datapath_dropped_bytes_total',
    'Bytes of the packets the datapath dropped on this node, by reason, direction and family',
    'bytes',
  );
  const calls = new Counter({
    name: 'dyad_agent_cni_calls_total',
    help: 'CNI calls served: command, and code (0 for success, else the CNI error code)',
    labelNames: ['command', 'code'],
    registers,
  });
  const duration = new Histogram({
    name: 'dyad_agent_cni_duration_seconds',
    help: 'Time the agent spent on a CNI call (socket to answer)',
    labelNames: ['command'],
    buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5],
    registers,
  });
  new Gauge({
    name: 'dyad_agent_endpoints',
    help: 'Endpoints by phase (ready, adding)',
    labelNames: ['phase'],
    registers,
    collect() {
      this.reset();
      for (const ep of agent.endpoints()) this.inc({ phase: ep.phase });
    },
  });
  const writeCounter = (
    name: string,
    help: string,
    pick: (s: { syscalls: number; written: number; deleted: number; unchanged: number }) => number,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: ['map'],
      registers,
      collect() {
        for (const [map, s] of Object.entries(datapath.stats())) this.set({ map }, pick(s));
      },
    });
  writeCounter(
    'dyad_agent_map_syscalls',
    'Write syscalls (batch update/delete) issued per map since start',
    (s) => s.syscalls,
  );
  writeCounter(
    'dyad_agent_map_entries_written',
    'Map entries written per map since start',
    (s) => s.written,
  );
  writeCounter(
    'dyad_agent_map_entries_deleted',
    'Map entries deleted per map since start',
    (s) => s.deleted,
  );
  writeCounter(
    'dyad_agent_map_writes_skipped',
    'Writes dropped because the map already held the value',
    (s) => s.unchanged,
  );
  return {
    observeCni(reply, seconds) {
      const command = reply.request?.command ?? 'unknown';
      calls.inc({ command, code: String(reply.errorCode ?? 0) });
      duration.observe({ command }, seconds);
    },
  };
}
