import { FlowEvent, flowSubject } from '@dyad/contracts';
import type { FlowEventValue } from '@dyad/contracts';
import { Proto, Reason } from '@dyad/libbpf-ts';
import { Family } from '@dyad/netaddr';
import type { DatapathEvent } from '@dyad/libbpf-ts';
import { describe, expect, it, vi } from 'vitest';
import { FlowDirectory } from '../src/flows/directory.ts';
import { FlowExporter } from '../src/flows/exporter.ts';
import type { FlowSink, FlowSource } from '../src/flows/exporter.ts';
import { FlowEncoder } from '../src/flows/flow-json.ts';
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
  const pods = dir.replacement();
  pods.set('fd00:d1ad::5/128', { namespace: 'prod', name: 'web-0' });
  pods.set('fd00:d1ad::6/128', { namespace: 'prod', name: 'db-0' });
  pods.set('fd00:d1ad::/104', undefined);
  pods.commit();
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

  it("names every drop reason of the datapath with Hubble's name, none UNKNOWN_REASON", () => {
    const drops = Object.entries(Reason).filter(
      ([name]) => name.startsWith('DROP_') || name.startsWith('LB_'),
    );
    expect(drops.length).toBeGreaterThan(5);
    for (const [name, reason] of drops) {
      const f = flowOf({ ...drop, reason, reasonName: name }, lookup(directory()));
      expect(f.drop_reason_desc, name).not.toBe('UNKNOWN_REASON');
      expect(FlowEvent.schema.safeParse(f).success, name).toBe(true);
    }
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
      accepting: true,
      publish: (_s, f) => {
        if (budget === 0) return false;
        budget--;
        sent.push(FlowEvent.schema.parse(JSON.parse(f)));
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

describe('FlowEncoder', () => {
  /** A small deterministic generator, so a failure names a reproducible case. */
  function random(seed: number): () => number {
    let s = seed;
    return () => {
      s = (s * 1_103_515_245 + 12_345) % 2 ** 31;
      return s / 2 ** 31;
    };
  }
  const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;

  it('writes exactly JSON.stringify(flowOf(e)), a valid flow, and the same subject and ce-subject, for every kind of event', () => {
    const r = random(17);
    const dir = directory();
    // a label that JSON must escape, and a pod known only to the node
    dir.replaceLabels([
      [0x10002, ['dyad:namespace=prod', 'k8s:app=db']],
      [0x10001, ['k8s:quote="x"\\y', 'k8s:\u00e9\u0001']],
    ]);
    const l = lookup(dir);
    const encoder = new FlowEncoder(l);
    const reasons = [...Object.values(Reason), 0, 200];
    const protos = [Proto.TCP, Proto.UDP, Proto.SCTP, Proto.ICMP, Proto.ICMPV6, 47];
    const v4 = ['198.18.1.9', '198.19.255.1', '198.18.0.77'];
    const v6 = ['fd00:d1ad::5', 'fd00:d1ad::6', 'fd00::1'];
    for (let i = 0; i < 2000; i++) {
      const family = r() < 0.5 ? Family.IPv4 : Family.IPv6;
      const proto = pick(r, protos);
      // the datapath keeps the ICMP type in dport
      const icmp = proto === Proto.ICMP || proto === Proto.ICMPV6;
      const e: DatapathEvent = {
        tsNs: BigInt(Math.floor(r() * 1e12)),
        type: r() < 0.5 ? 'drop' : 'trace',
        reason: pick(r, reasons),
        reasonName: 'X',
        family,
        src: pick(r, family === Family.IPv4 ? v4 : v6),
        dst: pick(r, family === Family.IPv4 ? v4 : v6),
        sport: icmp ? 0 : Math.floor(r() * 65536),
        dport: Math.floor(r() * (icmp ? 256 : 65536)),
        proto,
        tcpFlags: Math.floor(r() * 256),
        isReply: r() < 0.3,
        direction: pick(r, ['ingress', 'egress', undefined] as const),
        ifindex: pick(r, [7, 8]),
        srcIdentity: pick(r, [0x10001, 0x10002, 2]),
        dstIdentity: pick(r, [0x10001, 0x10002, 2]),
      };
      const f = flowOf(e, l);
      const got = encoder.encode(e);
      expect(got.json).toBe(JSON.stringify(f));
      expect(FlowEvent.schema.parse(JSON.parse(got.json))).toEqual(f);
      expect(got.subject).toBe(flowSubject(f));
      expect(got.ceSubject).toBe(flowCeSubject(f));
      expect(got.time).toBe(f.time);
    }
  });

  it('the exporter counts what a sink that is not accepting would refuse, without writing it', async () => {
    const source = new ListSource([drop, drop, drop]);
    let calls = 0;
    const sink: FlowSink = {
      accepting: false,
      publish: () => {
        calls++;
        return false;
      },
    };
    const ex = new FlowExporter({ source, lookup: () => lookup(directory()), sink: () => sink });
    ex.start(() => undefined);
    await ex.close();
    expect(calls).toBe(0);
    expect(ex.counters()).toMatchObject({ received: 3, published: 0, droppedUnsent: 3 });
  });

  it('the exporter takes a fresh lookup on a later turn: a pod the directory learns shows', async () => {
    const dir = new FlowDirectory();
    const sent: FlowEventValue[] = [];
    const events: DatapathEvent[] = [];
    const source: FlowSource = {
      dropped: 0,
      async *[Symbol.asyncIterator]() {
        for (;;) {
          const e = events.shift();
          if (e !== undefined) yield e;
          else await new Promise((r) => setImmediate(r));
          if (sent.length === 2) return;
        }
      },
      close: async () => {},
    };
    const sink: FlowSink = {
      accepting: true,
      publish: (_s, f) => {
        sent.push(FlowEvent.schema.parse(JSON.parse(f)));
        return true;
      },
    };
    const ex = new FlowExporter({ source, lookup: () => lookup(dir), sink: () => sink });
    ex.start(() => undefined);
    events.push(drop);
    await vi.waitFor(() => expect(sent).toHaveLength(1));
    dir.setPod('fd00:d1ad::6/128', { namespace: 'prod', name: 'db-0' });
    await new Promise((r) => setImmediate(r));
    events.push(drop);
    await vi.waitFor(() => expect(sent).toHaveLength(2));
    await ex.close();
    expect(sent[0]?.destination.pod_name).toBeUndefined();
    expect(sent[1]?.destination.pod_name).toBe('db-0');
  });
});
