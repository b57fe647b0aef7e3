import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  Direction,
  LbConst,
  LbServiceFlags,
  LbSnatFlags,
  Libbpf,
  openPinnedDatapath,
  Reason,
  sumPerCpu,
} from '../src/index.ts';
import type { DatapathMapSet } from '../src/index.ts';
import { ensureBpfBuilt } from './helpers/build.ts';
import { kernelRequired, kernelSkipReason } from './helpers/kernel.ts';
import { KernelFixture } from './helpers/kernel-fixture.ts';
import type { Pod, Uplink } from './helpers/kernel-fixture.ts';
import { setFrontend } from './helpers/lb.ts';
import { podAgentSpec, setupNode } from './helpers/topology.ts';

const skip = kernelSkipReason();
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

function counted(maps: DatapathMapSet, reason: number, family: number): bigint {
  const v = maps.metrics.lookupPerCpu({ reason, direction: Direction.NODE, family });
  return v ? sumPerCpu(v).packets : 0n;
}

// Node n1 serves the NodePorts on its uplink address and holds backend b1 (and pod a); n2 holds
// backend b2. The client is n2's own network stack (a host beyond n1), so its packets reach n1
// through n1's uplink, where from-netdev translates them.
describe.skipIf(skip !== undefined)('NodePort on the uplink, both families', () => {
  const lab = new KernelFixture();
  let a: Pod;
  let b1: Pod;
  let b2: Pod;
  let up: Uplink;
  const teardown: (() => unknown)[] = [];
  let m1: DatapathMapSet;
  const TARGET = 7000;
  const NP = {
    cluster: 30001, // b1 and b2, externalTrafficPolicy Cluster
    remote: 30002, // only b2 (on the other node): SNAT
    local: 30003, // b1 and b2, Local: n1's table holds only b1
    localNone: 30004, // Local, no backend on n1
    empty: 30005, // Cluster, no backend at all
    closedRemote: 30006, // b2 on a port nothing listens on: its ICMP error comes back via SNAT
    closedLocal: 30007, // the same on b1, Local
  } as const;
  const CLOSED = 7999;

  beforeAll(async () => {
    ensureBpfBuilt();
    const n1 = lab.addNode('n1');
    const n2 = lab.addNode('n2');
    up = lab.link(n1, '198.19.0.1', 'fd00:19::1', n2, '198.19.0.2', 'fd00:19::2');
    a = lab.addPod(n1, 'pa', '198.18.1.11', 'fd00:18:1::11');
    b1 = lab.addPod(n1, 'pb1', '198.18.1.12', 'fd00:18:1::12');
    b2 = lab.addPod(n2, 'pb2', '198.18.2.11', 'fd00:18:2::11');
    const ipcache = [
      { prefix: '198.18.1.0/24', identity: 3001, nodeId: 1, nodeAddress: up.a.v4 },
      { prefix: 'fd00:18:1::/64', identity: 3001, nodeId: 1, nodeAddress: up.a.v6 },
      { prefix: '198.18.2.0/24', identity: 3002, nodeId: 2, nodeAddress: up.b.v4 },
      { prefix: 'fd00:18:2::/64', identity: 3002, nodeId: 2, nodeAddress: up.b.v6 },
    ];
    const n1Pods = [
      { pod: a, endpointId: 1, identity: 3001 },
      { pod: b1, endpointId: 2, identity: 3001 },
    ];
    const n2Pods = [{ pod: b2, endpointId: 1, identity: 3002 }];
    for (const [node, pods, ifindex] of [
      [n1, n1Pods, up.a.ifindex],
      [n2, n2Pods, up.b.ifindex],
    ] as const)
      await setupNode(lab, node, pods, {
        ipcache,
        attach: [
          ...podAgentSpec(pods).attach,
          { ifindex, program: 'fromNetdev', direction: 'ingress' },
        ],
      });
    m1 = openPinnedDatapath(Libbpf.open(), n1.pinDir);
    teardown.push(() => m1.close());
    let id = 1;
    for (const fam of ['v4', 'v6'] as const) {
      const off = fam === 'v6' ? 10 : 0;
      const bb1 = { id: 1 + off, address: b1[fam], port: TARGET };
      const bb2 = { id: 2 + off, address: b2[fam], port: TARGET };
      const NODEPORT = LbServiceFlags.NODEPORT;
      const LOCAL = LbServiceFlags.NODEPORT | LbServiceFlags.LOCAL;
      const frontends = [
        [NP.cluster, [bb1, bb2], NODEPORT],
        [NP.remote, [bb2], NODEPORT],
        [NP.local, [bb1], LOCAL],
        [NP.localNone, [], LOCAL],
        [NP.empty, [], NODEPORT],
        [NP.closedRemote, [{ ...bb2, id: 3 + off, port: CLOSED }], NODEPORT],
        [NP.closedLocal, [{ ...bb1, id: 4 + off, port: CLOSED }], LOCAL],
      ] as const;
      for (const [port, backends, flags] of frontends)
        for (const protocol of ['TCP', 'UDP'] as const)
          setFrontend(m1, { id: id++, address: up.a[fam], port, protocol, backends, flags });
    }
    await lab.whoServer(b1, 'b1', [TARGET]);
    await lab.whoServer(b2, 'b2', [TARGET]);
  });

  afterAll(() => {
    for (const undo of teardown.reverse()) undo();
    lab.cleanup();
  });

  const client = () => ({ netns: up.b.node.netns });
  const CASES = (['v4', 'v6'] as const).flatMap((fam) =>
    (['tcp', 'udp'] as const).map((proto) => [proto, fam === 'v4' ? 'IPv4' : 'IPv6', fam] as const),
  );

  test.each(CASES)(
    '%s over %s, Cluster: a backend on another node answers through the node (SNAT)',
    async (proto, _n, fam) => {
      const r = await lab.who(client(), proto, up.a[fam], NP.remote, 3, 1500, 'peer');
      // b2 sees n1's address: the reply had to come back through n1
      expect(r, r.stderr).toMatchObject({ names: Array(3).fill(`b2 ${up.a[fam]}`), ok: true });
      const replies = m1.lbSnat
        .lookupBatch()
        .filter(([k, v]) => v.flags & LbSnatFlags.REPLY && k.src === b2[fam]);
      expect(replies.map(([k, v]) => [k.dst, v.address, v.frontendPort])).toContainEqual([
        up.a[fam],
        up.b[fam],
        NP.remote,
      ]);
      for (const [k] of replies) expect(k.dport).toBeGreaterThanOrEqual(LbConst.SNAT_PORT_MIN);
    },
  );

  test.each(CASES)(
    '%s over %s, Cluster: new connections spread over the local and the remote backend',
    async (proto, _n, fam) => {
      const r = await lab.who(client(), proto, up.a[fam], NP.cluster, 16);
      expect(r.ok, r.stderr).toBe(true);
      expect(new Set(r.names)).toEqual(new Set(['b1', 'b2']));
    },
  );

  test.each(CASES)(
    '%s over %s, Local: the local backend answers and sees the client address',
    async (proto, _n, fam) => {
      const r = await lab.who(client(), proto, up.a[fam], NP.local, 3, 1500, 'peer');
      expect(r, r.stderr).toMatchObject({ names: Array(3).fill(`b1 ${up.b[fam]}`), ok: true });
    },
  );

  test.each(CASES)(
    '%s over %s, Local without a backend on the node: dropped and counted',
    async (proto, _n, fam) => {
      const f = fam === 'v4' ? 4 : 6;
      const before = counted(m1, Reason.LB_NO_LOCAL_BACKEND, f);
      const r = await lab.who(client(), proto, up.a[fam], NP.localNone, 1, 1000);
      expect({ ok: r.ok, refused: r.refused }).toEqual({ ok: false, refused: false });
      expect(counted(m1, Reason.LB_NO_LOCAL_BACKEND, f)).toBeGreaterThan(before);
    },
  );

  test.each(CASES)(
    '%s over %s, no backend at all: refused at once (ICMP port unreachable)',
    async (proto, _n, fam) => {
      const f = fam === 'v4' ? 4 : 6;
      const before = counted(m1, Reason.LB_NO_BACKEND, f);
      const r = await lab.who(client(), proto, up.a[fam], NP.empty, 1, 5000);
      expect(r.refused, r.stderr).toBe(true);
      expect(counted(m1, Reason.LB_NO_BACKEND, f)).toBeGreaterThan(before);
    },
  );

  // The backend's port unreachable quotes the packet it got (node:SNAT port -> b2, or client ->
  // b1); untranslated, the client's socket (connected to n1:NodePort) would never see it.
  test.each(['v4', 'v6'] as const)(
    'ICMP errors about a NodePort flow reach the client (%s; backend behind SNAT and local)',
    async (fam) => {
      for (const port of [NP.closedRemote, NP.closedLocal]) {
        const r = await lab.who(client(), 'udp', up.a[fam], port, 1, 3000);
        expect({ port, refused: r.refused }, r.stderr).toEqual({ port, refused: true });
      }
    },
  );

  test.each(CASES)(
    '%s over %s: a pod of the node reaches its node address and NodePort',
    async (proto, _n, fam) => {
      const r = await lab.who(a, proto, up.a[fam], NP.remote, 2);
      expect(r, r.stderr).toMatchObject({ names: ['b2', 'b2'], ok: true });
    },
  );
});
