// "No way around it" (issue 15): crafted packets that once stepped around policy in the datapath.
// Each case sends the packet for real (raw frames into a pod's veth from the node, or out of a
// pod) and captures what reaches the receiving pod's eth0: a case fails when the packet arrives
// where it must not, and a control case beside it shows the same packet shape does arrive where
// it is allowed, so the capture itself is proven.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { EndpointFlags, Libbpf, openPinnedDatapath, Proto, Reason } from '../src/index.ts';
import type { DatapathEvent, DatapathMapSet, PolicyRule } from '../src/index.ts';
import { PolicyAction, policyKeys } from '../src/index.ts';
import { ensureBpfBuilt } from './helpers/build.ts';
import { EventLog } from './helpers/events.ts';
import { kernelRequired, kernelSkipReason } from './helpers/kernel.ts';
import { KernelFixture, POD_GW4, POD_GW6 } from './helpers/kernel-fixture.ts';
import type { Pod } from './helpers/kernel-fixture.ts';
import {
  ETH_P_IP,
  ETH_P_IPV6,
  eth,
  fragmentHeader,
  icmp,
  ipv4,
  ipv6,
  NH,
  optionsHeader,
  routerAlert,
  udp,
} from './helpers/packets.ts';
import { setupNode } from './helpers/topology.ts';

const skip = kernelSkipReason();
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

const EP = { a: 1, b: 2, c: 3, d: 4 } as const;
const ID = { a: 2101, b: 2102, c: 2103, d: 2104 } as const;
/** Outside the cluster: no ipcache entry, so identity WORLD and no rule allows it. */
const WORLD = { v4: '198.19.77.7', v6: 'fd00:77::7' } as const;
/** Small tables so that a flood of a few thousand flows overflows one. */
const CT_ENTRIES = 256;
const NEGATIVE_WINDOW_MS = 600;

type Fam = 'v4' | 'v6';

describe.skipIf(skip !== undefined)('no way around policy in the datapath', () => {
  const lab = new KernelFixture();
  const lib = skip === undefined ? Libbpf.open() : undefined;
  let a: Pod;
  let b: Pod;
  let c: Pod;
  /** enforces egress only */
  let d: Pod;
  let maps: DatapathMapSet;
  let log: EventLog;
  // What beforeAll opened, closed in reverse even when it stopped half-way.
  const teardown: (() => unknown)[] = [];

  const allow = (rule: PolicyRule) => {
    for (const k of policyKeys(rule))
      maps.policy.update(k, { action: PolicyAction.ALLOW, ruleId: 15 });
  };
  const dropsOf = (pred: (e: DatapathEvent) => boolean) =>
    log.events.filter((e) => e.type === 'drop' && pred(e));
  /**
   * Frames arriving at the pod's eth0 that carry the marker: all `expected` of them (the capture
   * ends when they are there), or, when none is expected, what arrived up to NEGATIVE_WINDOW_MS
   * after `send` returned, however long the machine took to start the sender.
   */
  const arriving = async (
    pod: Pod,
    marker: Buffer,
    send: () => Promise<void>,
    expected = 0,
  ): Promise<number> => {
    // the long window only guards a hang
    const cap = await lab.capture(pod.netns, 'eth0', marker, 60_000, expected === 0 ? 1 : expected);
    await send();
    if (expected === 0) setTimeout(cap.stop, NEGATIVE_WINDOW_MS);
    return cap.count;
  };
  /** Into a pod through its veth: what the node (or another node, or a pod) sends it. */
  const intoPod = (pod: Pod, type: number, l3: Buffer) =>
    lab.sendFrames(pod.node.netns, pod.hostIf, [eth(pod.mac, pod.hostMac, type, l3)]);
  /** Out of a pod, as its own stack would send it. */
  const outOfPod = (pod: Pod, frames: readonly Buffer[], cpu?: number) =>
    lab.sendFrames(pod.netns, 'eth0', frames, cpu);
  const ethType = (f: Fam) => (f === 'v4' ? ETH_P_IP : ETH_P_IPV6);
  const udpPacket = (
    f: Fam,
    src: string,
    dst: string,
    sport: number,
    dport: number,
    body: Buffer,
  ) =>
    f === 'v4'
      ? ipv4({ src, dst, proto: Proto.UDP }, udp(src, dst, sport, dport, body))
      : ipv6({ src, dst, next: NH.UDP }, udp(src, dst, sport, dport, body));

  beforeAll(async () => {
    ensureBpfBuilt();
    const node = lab.addNode('n1');
    a = lab.addPod(node, 'pa', '198.18.1.21', 'fd00:18:1::21');
    b = lab.addPod(node, 'pb', '198.18.1.22', 'fd00:18:1::22');
    c = lab.addPod(node, 'pc', '198.18.1.23', 'fd00:18:1::23');
    d = lab.addPod(node, 'pd', '198.18.1.24', 'fd00:18:1::24');
    await setupNode(
      lab,
      node,
      [
        { pod: a, endpointId: EP.a, identity: ID.a, flags: EndpointFlags.ENFORCE_INGRESS },
        { pod: b, endpointId: EP.b, identity: ID.b, flags: EndpointFlags.ENFORCE_INGRESS },
        { pod: c, endpointId: EP.c, identity: ID.c },
        { pod: d, endpointId: EP.d, identity: ID.d, flags: EndpointFlags.ENFORCE_EGRESS },
      ],
      {
        ctEntries: CT_ENTRIES,
        ipcache: [a, b, c, d].flatMap((p, i) => [
          { prefix: `${p.v4}/32`, identity: [ID.a, ID.b, ID.c, ID.d][i] ?? 0 },
          { prefix: `${p.v6}/128`, identity: [ID.a, ID.b, ID.c, ID.d][i] ?? 0 },
        ]),
      },
    );
    // the world's addresses go nowhere, silently: an ICMP unreachable from the node would touch
    // the flow's conntrack entry (as related), and a touched LRU entry gets a second chance
    lab.nsExec(node.netns, ['ip', 'route', 'add', 'blackhole', `${WORLD.v4}/32`]);
    lab.nsExec(node.netns, ['ip', '-6', 'route', 'add', 'blackhole', `${WORLD.v6}/128`]);
    maps = openPinnedDatapath(lib as Libbpf, node.pinDir);
    teardown.push(() => maps.close());
    log = new EventLog(lib as Libbpf, maps.events.fd);
    teardown.push(() => log.close());
    // b admits UDP 7200 from a, and anything from c (an any-protocol rule: what a port-less
    // packet would slip through)
    allow({
      endpointId: EP.b,
      identity: ID.a,
      direction: 'ingress',
      proto: Proto.UDP,
      ports: 7200,
    });
    allow({ endpointId: EP.b, identity: ID.c, direction: 'ingress' });
    // d may send anything to c
    allow({ endpointId: EP.d, identity: ID.c, direction: 'egress' });
    await lab.echoServer(b, [7200]);
    await lab.echoServer(c, [7300]);
  });

  afterAll(async () => {
    for (const undo of teardown.reverse()) await undo();
    lab.cleanup();
  });

  describe('IPv6 extension chains longer than the parser walks', () => {
    const chain = (n: number, src: string, dst: string, marker: Buffer) => {
      const hdrs = Array.from({ length: n }, (_, i) =>
        optionsHeader(i === n - 1 ? NH.UDP : NH.DSTOPTS),
      );
      return ipv6(
        { src, dst, next: n > 0 ? NH.DSTOPTS : NH.UDP },
        Buffer.concat([...hdrs, udp(src, dst, 40000, 7150, marker)]),
      );
    };

    test('four headers are walked: the UDP behind them meets the any-protocol rule and arrives', async () => {
      const m = randomBytes(8);
      expect(await arriving(b, m, () => intoPod(b, ETH_P_IPV6, chain(4, c.v6, b.v6, m)), 1)).toBe(
        1,
      );
    });

    test('five headers: dropped for the enforcing pod (not judged port-less), with its reason', async () => {
      const m = randomBytes(8);
      expect(await arriving(b, m, () => intoPod(b, ETH_P_IPV6, chain(5, c.v6, b.v6, m)))).toBe(0);
      const drops = dropsOf((e) => e.dst === b.v6 && e.reason === Reason.DROP_IPV6_EXT);
      expect(drops.length).toBeGreaterThan(0);
      expect(drops[0]?.direction).toBe('ingress');
    });

    test('leaving a pod that enforces egress: four headers pass its any-protocol rule, five are dropped', async () => {
      const out = (n: number, m: Buffer) =>
        outOfPod(d, [eth(d.hostMac, d.mac, ETH_P_IPV6, chain(n, d.v6, c.v6, m))]);
      const m4 = randomBytes(8);
      expect(await arriving(c, m4, () => out(4, m4), 1)).toBe(1);
      const m5 = randomBytes(8);
      expect(await arriving(c, m5, () => out(5, m5))).toBe(0);
      const drops = dropsOf((e) => e.src === d.v6 && e.reason === Reason.DROP_IPV6_EXT);
      expect(drops.map((e) => e.direction)).toEqual(['egress']);
    });

    test('five headers to a pod that enforces nothing still arrive', async () => {
      const m = randomBytes(8);
      expect(await arriving(c, m, () => intoPod(c, ETH_P_IPV6, chain(5, a.v6, c.v6, m)), 1)).toBe(
        1,
      );
    });
  });

  describe('fragments are judged with their datagram’s ports', () => {
    test.each([
      ['IPv4', () => b.v4],
      ['IPv6', () => b.v6],
    ])(
      '%s: a datagram larger than the MTU to an allowed port arrives whole, and its fragmented reply too',
      async (_n, dst) => {
        // a enforces ingress as well: the reply's later fragments need the tracked ports
        expect(await lab.echo(a, 'udp', dst(), 7200, 3000, 4000)).toBe(true);
      },
    );

    /** A datagram in two fragments: UDP header and 8 bytes, then the rest at offset 16. */
    const train = (f: Fam, src: string, dst: string, dport: number, id: number, m: Buffer) => {
      const tail = Buffer.concat([m, Buffer.alloc(24)]);
      const head = udp(src, dst, 40001, dport, m, 8 + m.length + tail.length);
      if (f === 'v4')
        return [
          ipv4({ src, dst, proto: Proto.UDP, id, more: true }, head),
          ipv4({ src, dst, proto: Proto.UDP, id, offset: 2 }, tail),
        ];
      return [
        ipv6(
          { src, dst, next: NH.FRAGMENT },
          Buffer.concat([fragmentHeader(NH.UDP, 0, true, id), head]),
        ),
        ipv6(
          { src, dst, next: NH.FRAGMENT },
          Buffer.concat([fragmentHeader(NH.UDP, 2, false, id), tail]),
        ),
      ];
    };
    const frames = (f: Fam, pod: Pod, l3: readonly Buffer[]) =>
      lab.sendFrames(
        pod.node.netns,
        pod.hostIf,
        l3.map((p) => eth(pod.mac, pod.hostMac, ethType(f), p)),
      );

    test.each(['v4', 'v6'] as const)(
      '%s: both fragments of a crafted datagram to the allowed port arrive',
      async (f) => {
        const m = randomBytes(8);
        const l3 = train(f, a[f], b[f], 7200, 0x7100, m);
        expect(await arriving(b, m, () => frames(f, b, l3), 2)).toBe(2);
      },
    );

    test.each(['v4', 'v6'] as const)(
      '%s: a datagram to a port the rule does not open is dropped whole, later fragments by that port',
      async (f) => {
        const m = randomBytes(8);
        const l3 = train(f, a[f], b[f], 7299, 0x7200, m);
        expect(await arriving(b, m, () => frames(f, b, l3))).toBe(0);
        // both fragments dropped by policy for port 7299: the later one was judged with the
        // first one's ports, not as port 0
        await expect.poll(() => dropsOf((e) => e.src === a[f] && e.dport === 7299).length).toBe(2);
        expect(dropsOf((e) => e.src === a[f] && e.dport === 7299)[1]?.reason).toBe(
          Reason.DROP_POLICY,
        );
      },
    );

    test.each(['v4', 'v6'] as const)(
      '%s: a later fragment without its first is dropped, even from a peer an any-protocol rule admits',
      async (f) => {
        const m = randomBytes(8);
        const [, orphan] = train(f, c[f], b[f], 7200, 0x7300, m);
        expect(await arriving(b, m, () => frames(f, b, [orphan as Buffer]))).toBe(0);
        const drops = dropsOf((e) => e.src === c[f] && e.reason === Reason.DROP_FRAG_UNKNOWN);
        expect(drops.length).toBe(1);
      },
    );

    test.each(['v4', 'v6'] as const)(
      '%s: an orphan fragment leaving a pod that enforces egress is dropped there',
      async (f) => {
        const m = randomBytes(8);
        const [, orphan] = train(f, d[f], c[f], 7300, 0x7400, m);
        const frame = eth(d.hostMac, d.mac, ethType(f), orphan as Buffer);
        expect(await arriving(c, m, () => outOfPod(d, [frame]))).toBe(0);
        const drops = dropsOf((e) => e.src === d[f] && e.reason === Reason.DROP_FRAG_UNKNOWN);
        expect(drops.map((e) => e.direction)).toEqual(['egress']);
      },
    );
  });

  describe('only ND and MLD are exempt from the checks', () => {
    test.each([
      ['UDP to ff02::1', 'v6', POD_GW6, 'ff02::1'],
      ['UDP to a link-local address', 'v6', POD_GW6, 'fe80::22'],
      ['UDP to 255.255.255.255', 'v4', POD_GW4, '255.255.255.255'],
      ['UDP to 224.0.0.1', 'v4', POD_GW4, '224.0.0.1'],
    ] as const)('%s into a pod is dropped with a counted reason', async (_n, f, src, dst) => {
      const m = randomBytes(8);
      const pkt =
        f === 'v4'
          ? ipv4({ src, dst, proto: Proto.UDP, ttl: 1 }, udp(src, dst, 5353, 7200, m))
          : ipv6({ src, dst, next: NH.UDP, hopLimit: 1 }, udp(src, dst, 5353, 7200, m));
      expect(await arriving(c, m, () => intoPod(c, ethType(f), pkt))).toBe(0);
      expect(dropsOf((e) => e.dst === dst && e.reason === Reason.DROP_NO_ENDPOINT).length).toBe(1);
    });

    test('UDP from a pod’s link-local address to ff02::1 meets anti-spoofing', async () => {
      const src = 'fe80::21';
      await outOfPod(a, [
        eth(
          '33:33:00:00:00:01',
          a.mac,
          ETH_P_IPV6,
          ipv6(
            { src, dst: 'ff02::1', next: NH.UDP, hopLimit: 1 },
            udp(src, 'ff02::1', 1, 2, randomBytes(8)),
          ),
        ),
      ]);
      await expect
        .poll(() => dropsOf((e) => e.src === src && e.reason === Reason.DROP_UNKNOWN_SOURCE).length)
        .toBe(1);
    });

    test('MLD reports pass with hop limit 1 from a link-local or unspecified source, not otherwise', async () => {
      const report = (src: string, hopLimit: number) =>
        eth(
          '33:33:00:00:00:16',
          a.mac,
          ETH_P_IPV6,
          ipv6(
            { src, dst: 'ff02::16', next: NH.HOPOPTS, hopLimit },
            Buffer.concat([
              routerAlert(NH.ICMPV6),
              icmp({ src, dst: 'ff02::16' }, 143, 0, Buffer.alloc(0)),
            ]),
          ),
        );
      // one sender on one CPU: the refused report's event comes after the others' would have
      await outOfPod(a, [report('fe80::a1:1', 1), report('::', 1), report('fe80::a1:2', 2)], 0);
      await expect
        .poll(() => dropsOf((e) => e.src === 'fe80::a1:2').map((e) => e.reason))
        .toEqual([Reason.DROP_UNKNOWN_SOURCE]);
      expect(dropsOf((e) => e.src === 'fe80::a1:1' || e.src === '::')).toEqual([]);
    });

    /** A neighbour solicitation; the 16-byte marker stands in the target address field. */
    const solicit = (src: string, dst: string, hopLimit: number, m: Buffer) =>
      ipv6({ src, dst, next: NH.ICMPV6, hopLimit }, icmp({ src, dst }, 135, 0, m));

    test('a neighbour solicitation with hop limit 255 passes a default-deny pod', async () => {
      const m = randomBytes(16);
      expect(
        await arriving(b, m, () => intoPod(b, ETH_P_IPV6, solicit(a.v6, b.v6, 255, m)), 1),
      ).toBe(1);
    });

    test('the same message with another hop limit was routed: it is policy-checked and dropped', async () => {
      const m = randomBytes(16);
      expect(await arriving(b, m, () => intoPod(b, ETH_P_IPV6, solicit(a.v6, b.v6, 64, m)))).toBe(
        0,
      );
      const drops = dropsOf((e) => e.src === a.v6 && e.proto === Proto.ICMPV6 && e.dport === 135);
      expect(drops.map((e) => e.reason)).toEqual([Reason.DROP_POLICY]);
    });
  });

  describe('ICMP errors are related only to a flow of the pod they enter', () => {
    const error = (f: Fam, src: string, dst: string, inner: Buffer, m: Buffer) =>
      f === 'v4'
        ? ipv4({ src, dst, proto: Proto.ICMP }, icmp(undefined, 3, 3, Buffer.concat([inner, m])))
        : ipv6({ src, dst, next: NH.ICMPV6 }, icmp({ src, dst }, 1, 4, Buffer.concat([inner, m])));

    test.each(['v4', 'v6'] as const)(
      '%s: an error about another pod’s tracked flow is judged as new traffic and dropped',
      async (f) => {
        // a's own flow to c, tracked in a's table
        expect(await lab.echo(a, 'udp', c[f], 7300)).toBe(true);
        using table = maps.conntrack.open(EP.a);
        const flow = [...(table?.keys() ?? [])].find(
          (k) => k.dst === c[f] && k.dport === 7300 && k.direction === 'egress',
        );
        expect(flow).toBeDefined();
        const inner = udpPacket(f, a[f], c[f], flow?.sport ?? 0, 7300, Buffer.alloc(0));
        const m = randomBytes(8);
        const pkt = error(f, WORLD[f], b[f], inner, m);
        expect(await arriving(b, m, () => intoPod(b, ethType(f), pkt))).toBe(0);
        const drops = dropsOf((e) => e.src === WORLD[f] && e.dst === b[f]);
        expect(drops.map((e) => e.reason)).toEqual([Reason.DROP_POLICY]);
      },
    );

    test.each(['v4', 'v6'] as const)(
      '%s: an error about the pod’s own flow passes its default deny as related',
      async (f) => {
        const sport = f === 'v4' ? 41004 : 41006;
        await outOfPod(b, [
          eth(
            b.hostMac,
            b.mac,
            ethType(f),
            udpPacket(f, b[f], WORLD[f], sport, 7301, randomBytes(8)),
          ),
        ]);
        await expect
          .poll(() => {
            using table = maps.conntrack.open(EP.b);
            return [...(table?.keys() ?? [])].some((k) => k.sport === sport && k.dst === WORLD[f]);
          })
          .toBe(true);
        const inner = udpPacket(f, b[f], WORLD[f], sport, 7301, Buffer.alloc(0));
        const m = randomBytes(8);
        const pkt = error(f, WORLD[f], b[f], inner, m);
        expect(await arriving(b, m, () => intoPod(b, ethType(f), pkt), 1)).toBe(1);
      },
    );
  });

  describe('one pod’s flows cannot evict another pod’s', () => {
    test.each(['v4', 'v6'] as const)(
      '%s: a pod opening far more flows than its table holds leaves the other pod’s replies passing',
      async (f) => {
        const sport = f === 'v4' ? 42004 : 42006;
        // b's flow out to the world: its reply is admitted only by b's conntrack entry. Both
        // senders run on one CPU: a shared LRU keeps a CPU's newest entries on that CPU's own
        // list, and it is a flood on the same CPU that would evict b's entry from one.
        await outOfPod(
          b,
          [
            eth(
              b.hostMac,
              b.mac,
              ethType(f),
              udpPacket(f, b[f], WORLD[f], sport, 7400, randomBytes(8)),
            ),
          ],
          0,
        );
        await expect
          .poll(() => [...maps.conntrack.keys()].some((k) => k.sport === sport))
          .toBe(true);
        // a floods: four times its table's size in new flows
        const flood = Array.from({ length: CT_ENTRIES * 4 }, (_, i) =>
          eth(
            a.hostMac,
            a.mac,
            ethType(f),
            udpPacket(f, a[f], WORLD[f], 20000 + i, 7401, Buffer.alloc(8)),
          ),
        );
        await outOfPod(a, flood, 0);
        {
          using aTable = maps.conntrack.open(EP.a);
          const aFlows = [...(aTable?.keys() ?? [])].filter((k) => k.dport === 7401);
          // the flood filled a's own table and evicted within it
          expect(aFlows.length).toBeGreaterThan(0);
          expect(aFlows.length).toBeLessThanOrEqual(CT_ENTRIES);
        }
        const m = randomBytes(8);
        const reply = udpPacket(f, WORLD[f], b[f], 7400, sport, m);
        expect(await arriving(b, m, () => intoPod(b, ethType(f), reply), 1)).toBe(1);
      },
    );
  });
});
