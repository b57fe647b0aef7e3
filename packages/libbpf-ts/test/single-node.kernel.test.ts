import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import {
  Direction,
  Libbpf,
  monotonicNs,
  openPinnedDatapath,
  Proto,
  Reason,
  sumPerCpu,
} from '../src/index.ts';
import type { DatapathMapSet } from '../src/index.ts';
import { ensureBpfBuilt } from './helpers/build.ts';
import { kernelRequired, kernelSkipReason } from './helpers/kernel.ts';
import { KernelFixture } from './helpers/kernel-fixture.ts';
import type { Pod } from './helpers/kernel-fixture.ts';
import { setupNode } from './helpers/topology.ts';

const skip = kernelSkipReason();
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

function forwarded(maps: DatapathMapSet, dir: number, family: number): bigint {
  const v = maps.metrics.lookupPerCpu({ reason: Reason.FORWARDED, direction: dir, family });
  return v ? sumPerCpu(v).packets : 0n;
}

describe.skipIf(skip !== undefined)('two pods on one node', () => {
  const lab = new KernelFixture();
  let a: Pod;
  let b: Pod;
  let maps: DatapathMapSet;
  // What beforeAll opened, closed in reverse even when it stopped half-way.
  const teardown: (() => unknown)[] = [];

  beforeAll(async () => {
    ensureBpfBuilt();
    const node = lab.addNode('n1');
    a = lab.addPod(node, 'pa', '198.18.1.11', 'fd00:18:1::11');
    b = lab.addPod(node, 'pb', '198.18.1.12', 'fd00:18:1::12');
    await setupNode(lab, node, [
      { pod: a, endpointId: 1, identity: 1001 },
      { pod: b, endpointId: 2, identity: 1002 },
    ]);
    maps = openPinnedDatapath(Libbpf.open(), node.pinDir);
    teardown.push(() => maps.close());
    await lab.echoServer(b, [7000]);
  });

  afterAll(async () => {
    for (const undo of teardown.reverse()) await undo();
    lab.cleanup();
  });

  test.each([
    ['IPv4', 4, () => b.v4],
    ['IPv6', 6, () => b.v6],
  ])(
    'ping over %s passes through both programs and moves their counters',
    async (_n, family, dst) => {
      const egressBefore = forwarded(maps, Direction.EGRESS, family);
      const ingressBefore = forwarded(maps, Direction.INGRESS, family);
      expect(await lab.ping(a, dst(), 3)).toBe(true);
      // 3 requests leave a and enter b; 3 replies leave b and enter a
      expect(forwarded(maps, Direction.EGRESS, family) - egressBefore).toBeGreaterThanOrEqual(6n);
      expect(forwarded(maps, Direction.INGRESS, family) - ingressBefore).toBeGreaterThanOrEqual(6n);
    },
  );

  test.each([
    ['tcp', 'IPv4', () => b.v4],
    ['tcp', 'IPv6', () => b.v6],
    ['udp', 'IPv4', () => b.v4],
    ['udp', 'IPv6', () => b.v6],
  ] as const)('%s echo over %s', async (proto, _f, dst) => {
    expect(await lab.echo(a, proto, dst(), 7000)).toBe(true);
  });

  test('conntrack holds the flows in both families', () => {
    const keys = [...maps.conntrack.keys()];
    expect(keys.some((k) => k.src === a.v4 && k.dst === b.v4 && k.direction === 'egress')).toBe(
      true,
    );
    expect(keys.some((k) => k.src === a.v6 && k.dst === b.v6 && k.direction === 'egress')).toBe(
      true,
    );
  });

  test('idle UDP entries age out on the configured timeout while other flows stay', async () => {
    const id = (k: { src: string; sport: number; dport: number; direction: string }) =>
      `${k.src}/${k.sport}/${k.dport}/${k.direction}`;
    const udpKeys = () =>
      new Set([...maps.conntrack.keys()].filter((k) => k.proto === Proto.UDP).map(id));
    const before = udpKeys();
    // other flows whose deadline is comfortably beyond this test's wait
    const lasting = () =>
      [...maps.conntrack.entries()]
        .filter(([k, v]) => k.proto !== Proto.UDP && v.expiresNs - monotonicNs() > 5_000_000_000n)
        .map(([k]) => id(k))
        .sort();
    const othersBefore = lasting();
    maps.config.update(0, { flags: 0, ct_tcp_s: 0, ct_tcp_close_s: 0, ct_udp_s: 1, ct_icmp_s: 0 });
    try {
      expect(await lab.echo(a, 'udp', b.v6, 7000)).toBe(true);
      const fresh = [...maps.conntrack.entries()].filter(
        ([k]) => k.proto === Proto.UDP && !before.has(id(k)),
      );
      expect(fresh.length).toBeGreaterThan(0);
      // the new flow's deadline follows the 1 s setting, not the 60 s default
      for (const [, v] of fresh) expect(v.expiresNs - monotonicNs()).toBeLessThan(2_000_000_000n);

      // the sweep runs once the kernel's clock is past every fresh entry's deadline
      const deadline = fresh.reduce((m, [, v]) => (v.expiresNs > m ? v.expiresNs : m), 0n);
      await vi.waitFor(() => expect(monotonicNs() > deadline).toBe(true), {
        timeout: 10_000,
        interval: 50,
      });
      expect(maps.conntrack.sweep()).toBe(fresh.length);
      // the fresh flow is gone; flows tracked under the default timeouts are still there
      expect(udpKeys()).toEqual(before);
      expect(othersBefore.every((k) => lasting().includes(k))).toBe(true);
      expect(await lab.echo(a, 'udp', b.v6, 7000)).toBe(true);
    } finally {
      maps.config.update(0, {
        flags: 0,
        ct_tcp_s: 0,
        ct_tcp_close_s: 0,
        ct_udp_s: 0,
        ct_icmp_s: 0,
      });
    }
  });
});
