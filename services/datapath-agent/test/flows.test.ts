import { FlowEvent, flowSubject } from '@dyad/contracts';
import type { FlowEventValue } from '@dyad/contracts';
import { Proto, Reason } from '@dyad/libbpf-ts';
import { Family } from '@dyad/netaddr';
import type { DatapathEvent } from '@dyad/libbpf-ts';
import { describe, expect, it } from 'vitest';
import { FlowDirectory } from '../src/flows/directory.ts';
import { FlowExporter } from '../src/flows/exporter.ts';
import type { FlowSink, FlowSource } from '../src/flows/exporter.ts';
import { flowCeSubject, flowOf } from '../src/flows/flow-of.ts';
import type { FlowLookup } from '../src/flows/flow-of.ts';

const drop: DatapathEvent = {
  tsNs: 1_000_000_000n,
  type: 'drop',
  reason: Reason.DROP_POLICY,
  reasonName: 'DROP_POLICY',
  family: Family.IPv6,
  src: 'fd00:d1ad::5',
  dst: 'fd00:d1ad::6',
  sport: 40000,
  dport: 8080,
  proto: Proto.TCP,
  tcpFlags: 0x02,
  isReply: false,
  direction: 'ingress',
  ifindex: 7,
  srcIdentity: 0x10001,
  dstIdentity: 0x10002,
};

function lookup(dir: FlowDirectory): FlowLookup {
  return {
    node: 'node-a',
    wallOffsetNs: 1_765_000_000_000_000_000n,
    pod: (a) => dir.pod(a),
    labels: (i) => dir.labels(i),
    ifname: (i) => (i === 7 ? 'dy1234' : undefined),
  };
}

function directory(): FlowDirectory {
  const dir = new FlowDirectory((a) =>
    a === '198.18.1.9' ? { namespace: 'local', name: 'l-0' } : undefined,
  );
  dir.replacePods([
    ['fd00:d1ad::5/128', { namespace: 'prod', name: 'web-0' }],
    ['fd00:d1ad::6/128', { namespace: 'prod', name: 'db-0' }],
    ['fd00:d1ad::/104', undefined],
  ]);
  dir.replaceLabels([[0x10002, ['dyad:namespace=prod', 'k8s:app=db']]]);
  return dir;
}

describe('flowOf', () => {
  it('a policy drop becomes a Hubble-shaped flow with both pods, valid under the contract', () => {
    const f = flowOf(drop, lookup(directory()));
    expect(FlowEvent.schema.parse(f)).toEqual(f);
    expect(f).toMatchObject({
      node_name: 'node-a',
      verdict: 'DROPPED',
      drop_reason: 10,
      drop_reason_desc: 'POLICY_DENIED',
      policy_verdict: 'DENIED',
      traffic_direction: 'INGRESS',
      IP: { source: 'fd00:d1ad::5', destination: 'fd00:d1ad::6', ipVersion: 'IPv6' },
      l4: { TCP: { source_port: 40000, destination_port: 8080, flags: { SYN: true } } },
      source: { identity: 0x10001, namespace: 'prod', pod_name: 'web-0', labels: [] },
      destination: {
        namespace: 'prod',
        pod_name: 'db-0',
        labels: ['dyad:namespace=prod', 'k8s:app=db'],
      },
      interface: { index: 7, name: 'dy1234' },
      is_reply: false,
      event_type: { type: 1 },
    });
    expect(f.time).toBe(new Date(1_765_000_001_000).toISOString());
    expect(flowSubject(f)).toBe('dyad.flow.v1.node-a.dropped.ipv6.prod.prod');
    // the pod the program ran for: the destination of an ingress packet
    expect(flowCeSubject(f)).toBe('pod/prod/db-0');
  });

  it('a traced ICMP flow from a local pod to the world: forwarded, allowed, no namespace at the far end', () => {
    const e: DatapathEvent = {
      ...drop,
      type: 'trace',
      reason: Reason.POLICY_ALLOWED,
      family: Family.IPv4,
      src: '198.18.1.9',
      dst: '198.19.255.1',
      sport: 0,
      dport: 8,
      proto: Proto.ICMP,
      tcpFlags: 0,
      direction: 'egress',
      srcIdentity: 0x10003,
      dstIdentity: 2,
    };
    const f = flowOf(e, lookup(directory()));
    expect(FlowEvent.schema.parse(f)).toEqual(f);
    expect(f).toMatchObject({
      verdict: 'FORWARDED',
      policy_verdict: 'ALLOWED',
      traffic_direction: 'EGRESS',
      l4: { ICMPv4: { type: 8 } },
      source: { namespace: 'local', pod_name: 'l-0' },
      destination: { identity: 2, labels: [] },
      event_type: { type: 4 },
    });
    expect(f.drop_reason).toBeUndefined();
    expect(f.destination.namespace).toBeUndefined();
    expect(flowSubject(f)).toBe('dyad.flow.v1.node-a.forwarded.ipv4.local._');
    expect(flowCeSubject(f)).toBe('pod/local/l-0');
  });

  it('a removed ipcache entry or identity stops naming the pod and its labels', () => {
    const dir = directory();
    dir.setPod('fd00:d1ad::6/128', undefined);
    dir.setLabels(0x10002, undefined);
    const f = flowOf(drop, lookup(dir));
    expect(f.destination).toEqual({ identity: 0x10002, labels: [] });
  });
});

/** A ring buffer reader stand-in: yields what it is given, counts its own drops. */
class ListSource implements FlowSource {
  dropped = 0;
  readonly events: DatapathEvent[];
  constructor(events: DatapathEvent[]) {
    this.events = events;
  }
  [Symbol.asyncIterator](): AsyncIterator<DatapathEvent> {
    const it = this.events[Symbol.iterator]();
    return { next: () => Promise.resolve(it.next()) };
  }
  async close(): Promise<void> {}
}

describe('FlowExporter', () => {
  it('publishes what the sink takes, counts what it refuses, and feeds monitors', async () => {
    const source = new ListSource(
      Array.from({ length: 10 }, (_, i) => ({ ...drop, sport: 1000 + i })),
    );
    source.dropped = 3;
    const sent: FlowEventValue[] = [];
    let budget = 6;
    const sink: FlowSink = {
      publish: (_s, f) => {
        if (budget === 0) return false;
        budget--;
        sent.push(f);
        return true;
      },
    };
    const dir = directory();
    const ex = new FlowExporter({ source, lookup: () => lookup(dir), sink: () => sink });
    const seen: FlowEventValue[] = [];
    ex.listen((f) => {
      seen.push(f);
      return seen.length <= 8;
    });
    let failed: unknown;
    ex.start((e) => (failed = e));
    await ex.close();
    expect(failed).toBeUndefined();
    expect(sent.map((f) => (f.l4 as { TCP: { source_port: number } }).TCP.source_port)).toEqual([
      1000, 1001, 1002, 1003, 1004, 1005,
    ]);
    expect(ex.counters()).toEqual({
      received: 10,
      published: 6,
      droppedQueue: 3,
      droppedUnsent: 4,
      missedByMonitors: 2,
    });
  });

  it('without a connection every flow is counted as unsent, none is kept', async () => {
    const ex = new FlowExporter({
      source: new ListSource([drop, drop]),
      lookup: () => lookup(directory()),
      sink: () => undefined,
    });
    ex.start(() => undefined);
    await ex.close();
    expect(ex.counters()).toMatchObject({ received: 2, published: 0, droppedUnsent: 2 });
  });
});
