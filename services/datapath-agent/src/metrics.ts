import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';
import type { EndpointManager } from './endpoint-manager.ts';
import type { CniReply } from './cni/handler.ts';
import type { NodeDatapath } from './datapath/node.ts';

export interface AgentMetrics {
  observeCni(reply: CniReply, seconds: number): void;
}

/** Prometheus metrics of the agent; map write counters are read from the mirrors on scrape. */
export function createAgentMetrics(
  registry: Registry,
  agent: EndpointManager,
  datapath: NodeDatapath,
): AgentMetrics {
  const registers = [registry];
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
