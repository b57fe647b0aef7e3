import type { Bus, BusConsumer, TelemetryPublisher } from '@dyad/bus';
import { FlowEvent } from '@dyad/contracts';
import type { AgentStatusValue, FlowEventValue } from '@dyad/contracts';
import { ConfigFlags, Reason, decodeDatapathEvent, monotonicNs } from '@dyad/libbpf-ts';
import type { Libbpf } from '@dyad/libbpf-ts';
import { Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import type { NodeDatapath } from '../datapath/node.ts';
import type { FlowDirectory } from './directory.ts';
import { FlowExporter } from './exporter.ts';
import { followIdentities } from './identities.ts';

/**
 * The memory bound of flow export. Decoded events wait in the reader's queue (at most
 * FLOW_QUEUE, ~0.5 KiB each); encoded flows wait in the NATS client's buffer until a flush
 * confirms them (at most FLOW_UNCONFIRMED, ~1.2 KiB each); the kernel's ring buffer is 256 KiB.
 * Together under 4 MiB, whatever the traffic: beyond it events are dropped and counted.
 */
export const FLOW_QUEUE = 1024;
export const FLOW_UNCONFIRMED = 2048;

export type FlowCountersValue = NonNullable<AgentStatusValue['flows']>;

export interface Flows {
  readonly directory: FlowDirectory;
  readonly exporter: FlowExporter;
  counters(): FlowCountersValue;
  /** (Re)starts following identities and publishing on this connection. */
  connect(bus: Bus): Promise<void>;
  close(): Promise<void>;
}

/** Sets or clears the datapath's trace flag (events for new allowed flows), keeping the rest. */
function setTrace(datapath: NodeDatapath, on: boolean): void {
  const config = datapath.loaded.maps.config;
  const cur = config.lookup(0) ?? {
    flags: 0,
    ct_tcp_s: 0,
    ct_tcp_close_s: 0,
    ct_udp_s: 0,
    ct_icmp_s: 0,
  };
  const flags = on ? cur.flags | ConfigFlags.TRACE : cur.flags & ~ConfigFlags.TRACE;
  if (flags !== cur.flags) config.update(0, { ...cur, flags });
}

/** Events the datapath could not put into the ring buffer, summed over CPUs and directions. */
function ringLost(datapath: NodeDatapath): number {
  let n = 0;
  for (const [k, vs] of datapath.loaded.maps.metrics.entriesPerCpu())
    if (k.reason === Reason.EVENT_LOST) for (const v of vs) n += Number(v.packets);
  return n;
}

export function startFlows(o: {
  lib: Libbpf;
  datapath: NodeDatapath;
  node: string;
  trace: boolean;
  directory: FlowDirectory;
  /** A host-side interface of this node's endpoints by index. */
  ifname: (ifindex: number) => string | undefined;
  registry: Registry;
  onError: (err: unknown) => void;
}): Flows {
  setTrace(o.datapath, o.trace);
  const directory = o.directory;
  const source = o.lib.ringBuffer(o.datapath.loaded.maps.events.fd, decodeDatapathEvent, {
    maxQueued: FLOW_QUEUE,
    // no more per turn than the queue holds: a record read only to be dropped costs its decode
    budget: FLOW_QUEUE,
  });
  let publisher: TelemetryPublisher<FlowEventValue> | undefined;
  let identities: BusConsumer | undefined;
  const exporter = new FlowExporter({
    source,
    lookup: () => ({
      node: o.node,
      wallOffsetNs: BigInt(Date.now()) * 1_000_000n - monotonicNs(),
      pod: (a) => directory.pod(a),
      labels: (id) => directory.labels(id),
      ifname: o.ifname,
    }),
    sink: () => publisher,
  });
  exporter.start(o.onError);
  const counters = (): FlowCountersValue => ({
    ...exporter.counters(),
    ringLost: ringLost(o.datapath),
  });
  new Gauge({
    name: 'dyad_agent_flow_events',
    help: 'Datapath events since start by outcome: published, dropped_queue, dropped_unsent, ring_lost',
    labelNames: ['outcome'],
    registers: [o.registry],
    collect() {
      const c = counters();
      this.set({ outcome: 'published' }, c.published);
      this.set({ outcome: 'dropped_queue' }, c.droppedQueue);
      this.set({ outcome: 'dropped_unsent' }, c.droppedUnsent);
      this.set({ outcome: 'ring_lost' }, c.ringLost);
    },
  });
  return {
    directory,
    exporter,
    counters,
    async connect(bus) {
      await identities?.stop();
      identities = await followIdentities(bus, directory);
      publisher ??= bus.telemetryPublisher(FlowEvent, {
        maxUnconfirmed: FLOW_UNCONFIRMED,
        flushEvery: 256,
      });
    },
    async close() {
      await identities?.stop();
      await exporter.close();
    },
  };
}
