import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createInterface } from 'node:readline';
import { Libbpf, openPinnedDatapath, Reason, Direction, sumPerCpu } from '../src/index.ts';
import type { DatapathMapSet } from '../src/index.ts';
import { ensureBpfBuilt } from './helpers/build.ts';
import { kernelRequired, kernelSkipReason } from './helpers/kernel.ts';
import { KernelFixture, WHO_SCRIPT } from './helpers/kernel-fixture.ts';
import { setFrontend } from './helpers/lb.ts';
import type { Backend } from './helpers/lb.ts';
import type { Pod, Uplink } from './helpers/kernel-fixture.ts';
import { podAgentSpec, setupNode } from './helpers/topology.ts';

const skip = kernelSkipReason();
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

function refusals(maps: DatapathMapSet, family: number): bigint {
  const v = maps.metrics.lookupPerCpu({
    reason: Reason.LB_NO_BACKEND,
    direction: Direction.EGRESS,
    family,
  });
  return v ? sumPerCpu(v).packets : 0n;
}

interface Held {
  readonly name: string;
  ask(): Promise<string>;
  close(): void;
}

/** One TCP connection held open from a pod (who.ts hold): who answered, and ask again on it. */
async function hold(lab: KernelFixture, pod: Pod, addr: string, port: number): Promise<Held> {
  const c = lab.spawnIn(pod, WHO_SCRIPT, ['hold', addr, String(port)]);
  const { stdin, stdout } = c;
  if (stdin === null || stdout === null) throw new Error('hold client has no pipes');
  const rl = createInterface({ input: stdout });
  const waiting: Array<(line: string) => void> = [];
  rl.on('line', (l) => waiting.shift()?.(l));
  const ask = () =>
    new Promise<string>((resolve, reject) => {
      waiting.push(resolve);
      c.once('exit', () => reject(new Error('hold client exited before an answer')));
      stdin.write('\n');
    });
  const name = await ask();
  return { name, ask, close: () => c.kill() };
}

const VIP = {
  both: { v4: '198.18.96.10', v6: 'fd00:96::10' },
  local: { v4: '198.18.96.11', v6: 'fd00:96::11' },
  remote: { v4: '198.18.96.12', v6: 'fd00:96::12' },
  empty: { v4: '198.18.96.13', v6: 'fd00:96::13' },
  self: { v4: '198.18.96.14', v6: 'fd00:96::14' },
  affine: { v4: '198.18.96.15', v6: 'fd00:96::15' },
  shrink: { v4: '198.18.96.16', v6: 'fd00:96::16' },
  deadLocal: { v4: '198.18.96.17', v6: 'fd00:96::17' },
  deadRemote: { v4: '198.18.96.18', v6: 'fd00:96::18' },
} as const;

// Node n1 holds the client pod a and backend b1, node n2 holds backend b2. The client's node
// balances; replies come back through its to-container, from the same node or over the uplink.
describe.skipIf(skip !== undefined)('ClusterIP load balancing in tc, both families', () => {
  const lab = new KernelFixture();
  let a: Pod;
  let b1: Pod;
  let b2: Pod;
  let up: Uplink;
  let m1: DatapathMapSet;
  // What beforeAll opened, closed in reverse even when it stopped half-way.
  const teardown: (() => unknown)[] = [];
  const PORT = 80;
  const TARGET = 7000;
  /** No server listens here: the backend's stack answers ICMP port unreachable. */
  const CLOSED = 7999;

  const be = (pod: Pod, fam: 'v4' | 'v6', id: number): Backend => ({
    id,
    address: pod[fam],
    port: TARGET,
  });

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
    await setupNode(lab, n1, n1Pods, {
      ipcache,
      attach: [
        ...podAgentSpec(n1Pods).attach,
        { ifindex: up.a.ifindex, program: 'fromNetdev', direction: 'ingress' },
      ],
    });
    await setupNode(lab, n2, n2Pods, {
      ipcache,
      attach: [
        ...podAgentSpec(n2Pods).attach,
        { ifindex: up.b.ifindex, program: 'fromNetdev', direction: 'ingress' },
      ],
    });
    m1 = openPinnedDatapath(Libbpf.open(), n1.pinDir);
    teardown.push(() => m1.close());
    let id = 1;
    for (const fam of ['v4', 'v6'] as const) {
      const frontends = [
        [VIP.both[fam], [be(b1, fam, 1), be(b2, fam, 2)]],
        [VIP.local[fam], [be(b1, fam, 1)]],
        [VIP.remote[fam], [be(b2, fam, 2)]],
        [VIP.empty[fam], []],
        [VIP.self[fam], [be(a, fam, 3)]],
        [VIP.shrink[fam], [be(b1, fam, 1), be(b2, fam, 2)]],
      ] as const;
      for (const [address, backends] of frontends)
        for (const protocol of ['TCP', 'UDP'] as const)
          setFrontend(m1, {
            id: id++,
            address,
            port: PORT,
            protocol,
            backends: backends.map((b) => ({ ...b, id: b.id + (fam === 'v6' ? 10 : 0) })),
          });
      const off = fam === 'v6' ? 10 : 0;
      setFrontend(m1, {
        id: id++,
        address: VIP.deadLocal[fam],
        port: PORT,
        protocol: 'UDP',
        backends: [{ id: 4 + off, address: b1[fam], port: CLOSED }],
      });
      setFrontend(m1, {
        id: id++,
        address: VIP.deadRemote[fam],
        port: PORT,
        protocol: 'UDP',
        backends: [{ id: 5 + off, address: b2[fam], port: CLOSED }],
      });
      setFrontend(m1, {
        id: id++,
        address: VIP.affine[fam],
        port: PORT,
        protocol: 'TCP',
        backends: [
          be(b1, fam, 1 + (fam === 'v6' ? 10 : 0)),
          be(b2, fam, 2 + (fam === 'v6' ? 10 : 0)),
        ],
        affinityS: 60,
      });
    }
    await lab.whoServer(a, 'a', [TARGET]);
    await lab.whoServer(b1, 'b1', [TARGET]);
    await lab.whoServer(b2, 'b2', [TARGET]);
  });

  afterAll(async () => {
    for (const undo of teardown.reverse()) await undo();
    lab.cleanup();
  });

  const FAMILIES = [
    ['IPv4', 'v4'],
    ['IPv6', 'v6'],
  ] as const;
  const CASES = FAMILIES.flatMap(([name, fam]) =>
    (['tcp', 'udp'] as const).map((proto) => [proto, name, fam] as const),
  );

  test.each(CASES)(
    '%s over %s: a backend on the same node answers for the cluster IP',
    async (proto, _n, fam) => {
      const r = await lab.who(a, proto, VIP.local[fam], PORT, 3);
      expect(r, r.stderr).toMatchObject({ names: ['b1', 'b1', 'b1'], refused: false, ok: true });
    },
  );

  test.each(CASES)(
    '%s over %s: a backend on another node answers for the cluster IP',
    async (proto, _n, fam) => {
      const r = await lab.who(a, proto, VIP.remote[fam], PORT, 3);
      expect(r, r.stderr).toMatchObject({ names: ['b2', 'b2', 'b2'], refused: false, ok: true });
    },
  );

  test.each(CASES)(
    '%s over %s: new connections spread over both backends',
    async (proto, _n, fam) => {
      const r = await lab.who(a, proto, VIP.both[fam], PORT, 16);
      expect(r.ok).toBe(true);
      expect(new Set(r.names)).toEqual(new Set(['b1', 'b2']));
    },
  );

  test.each(CASES)(
    '%s over %s: hairpin, a pod reaches itself through its Service',
    async (proto, _n, fam) => {
      const r = await lab.who(a, proto, VIP.self[fam], PORT, 2);
      expect(r, r.stderr).toMatchObject({ names: ['a', 'a'], refused: false, ok: true });
    },
  );

  test.each(CASES)(
    '%s over %s: no backend is refused at once (ICMP port unreachable)',
    async (proto, _n, fam) => {
      const before = refusals(m1, fam === 'v4' ? 4 : 6);
      const r = await lab.who(a, proto, VIP.empty[fam], PORT, 1, 5000);
      expect(r.refused).toBe(true);
      expect(refusals(m1, fam === 'v4' ? 4 : 6)).toBeGreaterThan(before);
    },
  );

  // Without translating the quoted packet back, the client's socket (connected to the cluster
  // IP) never matches the error and the send times out instead.
  test.each(FAMILIES)(
    'ICMP errors about a translated flow reach the client over %s (backend on this node and another)',
    async (_n, fam) => {
      for (const vip of [VIP.deadLocal[fam], VIP.deadRemote[fam]]) {
        const r = await lab.who(a, 'udp', vip, PORT, 1, 3000);
        expect({ vip, refused: r.refused }, r.stderr).toEqual({ vip, refused: true });
      }
    },
  );

  test.each(FAMILIES)(
    'sessionAffinity ClientIP over %s: every connection of a client goes to one backend',
    async (_n, fam) => {
      const r = await lab.who(a, 'tcp', VIP.affine[fam], PORT, 12);
      expect(r.ok).toBe(true);
      expect(new Set(r.names).size).toBe(1);
    },
  );

  test.each(FAMILIES)(
    'backend removal over %s: new connections avoid it, an established one to the other survives',
    async (_n, fam) => {
      const off = fam === 'v6' ? 10 : 0;
      // hold connections until both backends have one
      const held = new Map<string, Held>();
      for (let i = 0; i < 40 && held.size < 2; i++) {
        const c = await hold(lab, a, VIP.shrink[fam], PORT);
        if (held.has(c.name)) c.close();
        else held.set(c.name, c);
      }
      expect([...held.keys()].sort()).toEqual(['b1', 'b2']);

      // b2 leaves this Service: its Maglev table has only b1 now
      const key = { address: VIP.shrink[fam], port: PORT, protocol: 'TCP' as const };
      const id = m1.lbServices.lookup(key)?.id;
      if (id === undefined) throw new Error('frontend missing');
      setFrontend(m1, { id, ...key, backends: [be(b1, fam, 1 + off)] });
      const r = await lab.who(a, 'tcp', VIP.shrink[fam], PORT, 12);
      expect(r, r.stderr).toMatchObject({ ok: true });
      expect(new Set(r.names)).toEqual(new Set(['b1']));

      // the connection to b1 made before the change still answers
      expect(await held.get('b1')?.ask()).toBe('b1');
      for (const c of held.values()) c.close();
    },
  );
});
