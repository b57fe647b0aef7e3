import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Direction, Libbpf, openPinnedDatapath, Reason, sumPerCpu } from '../src/index.ts';
import type { DatapathMapSet } from '../src/index.ts';
import { ensureBpfBuilt } from './helpers/build.ts';
import { kernelRequired, kernelSkipReason } from './helpers/kernel.ts';
import { KernelFixture } from './helpers/kernel-fixture.ts';
import type { Pod, Uplink } from './helpers/kernel-fixture.ts';
import { setupNode } from './helpers/topology.ts';

const skip = kernelSkipReason();
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

function count(maps: DatapathMapSet, reason: number, dir: number, family: number): bigint {
  const v = maps.metrics.lookupPerCpu({ reason, direction: dir, family });
  return v ? sumPerCpu(v).packets : 0n;
}

// Node netns have no routes to each other's pod prefixes: only the ipcache (prefix -> node
// address) and a FIB lookup of that node address get packets across.
describe.skipIf(skip !== undefined)('pod to pod across two nodes', () => {
  const lab = new KernelFixture();
  let a: Pod;
  let b: Pod;
  let up: Uplink;
  let m1: DatapathMapSet;
  let m2: DatapathMapSet;
  // What beforeAll opened, closed in reverse even when it stopped half-way.
  const teardown: (() => unknown)[] = [];

  beforeAll(async () => {
    ensureBpfBuilt();
    const n1 = lab.addNode('n1');
    const n2 = lab.addNode('n2');
    up = lab.link(n1, '198.19.0.1', 'fd00:19::1', n2, '198.19.0.2', 'fd00:19::2');
    a = lab.addPod(n1, 'pa', '198.18.1.11', 'fd00:18:1::11');
    b = lab.addPod(n2, 'pb', '198.18.2.11', 'fd00:18:2::11');
    const ipcache = [
      { prefix: '198.18.1.0/24', identity: 3001, nodeId: 1, nodeAddress: up.a.v4 },
      { prefix: 'fd00:18:1::/64', identity: 3001, nodeId: 1, nodeAddress: up.a.v6 },
      { prefix: '198.18.2.0/24', identity: 3002, nodeId: 2, nodeAddress: up.b.v4 },
      { prefix: 'fd00:18:2::/64', identity: 3002, nodeId: 2, nodeAddress: up.b.v6 },
    ];
    await setupNode(lab, n1, [{ pod: a, endpointId: 1, identity: 3001 }], {
      ipcache,
      attach: [
        { ifindex: a.hostIfindex, program: 'fromContainer', direction: 'ingress' },
        { ifindex: a.hostIfindex, program: 'toContainer', direction: 'egress' },
        { ifindex: up.a.ifindex, program: 'fromNetdev', direction: 'ingress' },
      ],
    });
    await setupNode(lab, n2, [{ pod: b, endpointId: 1, identity: 3002 }], {
      ipcache,
      attach: [
        { ifindex: b.hostIfindex, program: 'fromContainer', direction: 'ingress' },
        { ifindex: b.hostIfindex, program: 'toContainer', direction: 'egress' },
        { ifindex: up.b.ifindex, program: 'fromNetdev', direction: 'ingress' },
      ],
    });
    const lib = Libbpf.open();
    m1 = openPinnedDatapath(lib, n1.pinDir);
    teardown.push(() => m1.close());
    m2 = openPinnedDatapath(lib, n2.pinDir);
    teardown.push(() => m2.close());
    await lab.echoServer(b, [7000]);
  });

  afterAll(async () => {
    for (const undo of teardown.reverse()) await undo();
    lab.cleanup();
  });

  test('the nodes have no route to the remote pod prefixes', () => {
    const r4 = lab.nsExec(up.a.node.netns, ['ip', '-4', 'route', 'show']);
    const r6 = lab.nsExec(up.a.node.netns, ['ip', '-6', 'route', 'show']);
    expect(r4).not.toContain('198.18.2.');
    expect(r6).not.toContain('fd00:18:2:');
  });

  test.each([
    ['IPv4', 4, () => b.v4],
    ['IPv6', 6, () => b.v6],
  ])('ping over %s crosses the nodes through the uplink programs', async (_n, family, dst) => {
    const n1Before = count(m1, Reason.FORWARDED, Direction.NODE, family);
    const n2Before = count(m2, Reason.FORWARDED, Direction.NODE, family);
    expect(await lab.ping(a, dst(), 3)).toBe(true);
    // replies arrive at n1's uplink, requests at n2's, each redirected to the pod by from-netdev
    expect(count(m1, Reason.FORWARDED, Direction.NODE, family) - n1Before).toBeGreaterThanOrEqual(
      3n,
    );
    expect(count(m2, Reason.FORWARDED, Direction.NODE, family) - n2Before).toBeGreaterThanOrEqual(
      3n,
    );
  });

  test.each([
    ['tcp', 'IPv4', () => b.v4],
    ['tcp', 'IPv6', () => b.v6],
    ['udp', 'IPv4', () => b.v4],
    ['udp', 'IPv6', () => b.v6],
  ] as const)('%s echo over %s across the nodes', async (proto, _f, dst) => {
    expect(await lab.echo(a, proto, dst(), 7000)).toBe(true);
  });
});
