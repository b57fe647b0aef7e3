import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { z } from 'zod';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { conntrackCodec, Libbpf, MapType, openPinnedDatapath } from '../src/index.ts';
import type { DatapathMapSet } from '../src/index.ts';
import { ensureBpfBuilt } from './helpers/build.ts';
import { kernelRequired, kernelSkipReason } from './helpers/kernel.ts';
import { KernelFixture } from './helpers/kernel-fixture.ts';
import type { Node, Pod } from './helpers/kernel-fixture.ts';
import { setupNode } from './helpers/topology.ts';
import type { PodSpec } from './helpers/topology.ts';

const skip = kernelSkipReason();
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

const DUMP = fileURLToPath(new URL('./helpers/dump-maps.ts', import.meta.url));
const Dump = z.object({
  endpoints: z.array(
    z.tuple([
      z.object({ address: z.string() }),
      z.object({ ifindex: z.number(), identity: z.number() }).loose(),
    ]),
  ),
  ipcache: z.array(
    z.tuple([z.object({ prefix: z.string() }), z.object({ identity: z.number() }).loose()]),
  ),
  endpointsMapId: z.number(),
});

function dumpFromAnotherProcess(pinDir: string): z.infer<typeof Dump> {
  return Dump.parse(
    JSON.parse(execFileSync(process.execPath, [DUMP, pinDir], { encoding: 'utf8' })),
  );
}

describe.skipIf(skip !== undefined)('pinned maps outlive the loading process', () => {
  const lab = new KernelFixture();
  let node: Node;
  let a: Pod;
  let b: Pod;
  let pods: PodSpec[];
  let maps: DatapathMapSet | undefined;

  beforeAll(async () => {
    ensureBpfBuilt();
    node = lab.addNode('n1');
    a = lab.addPod(node, 'pa', '198.18.1.11', 'fd00:18:1::11');
    b = lab.addPod(node, 'pb', '198.18.1.12', 'fd00:18:1::12');
    pods = [
      { pod: a, endpointId: 1, identity: 1001 },
      { pod: b, endpointId: 2, identity: 1002 },
    ];
    // the agent process loads, pins, attaches, fills, and exits before any test runs
    await setupNode(lab, node, pods, { ipcache: [{ prefix: '198.18.1.0/24', identity: 1000 }] });
  });

  afterAll(() => {
    maps?.close();
    lab.cleanup();
  });

  test('a second process reopens the pins and sees the agent’s entries', () => {
    const d = dumpFromAnotherProcess(node.pinDir);
    expect(d.endpoints.map(([k]) => k.address).sort()).toEqual([a.v4, a.v6, b.v4, b.v6].sort());
    expect(d.endpoints.find(([k]) => k.address === b.v6)?.[1]).toMatchObject({
      ifindex: b.hostIfindex,
      identity: 1002,
    });
    expect(d.ipcache).toEqual([
      [{ prefix: '198.18.1.0/24' }, expect.objectContaining({ identity: 1000 })],
    ]);
  });

  test('traffic flows while no user-space process holds the datapath', async () => {
    expect(await lab.ping(a, b.v4, 2)).toBe(true);
    expect(await lab.ping(a, b.v6, 2)).toBe(true);
  });

  test('a restarted agent reuses the same maps: state written meanwhile and conntrack survive', async () => {
    maps = openPinnedDatapath(Libbpf.open(), node.pinDir);
    maps.ipcache.update({ prefix: 'fd00:18:1::/64' }, { identity: 1000, nodeId: 0, flags: 0 });
    const ctBefore = [...maps.conntrack.keys()].filter((k) => k.src === a.v4 && k.dst === b.v4);
    expect(ctBefore.length).toBeGreaterThan(0);
    const idBefore = dumpFromAnotherProcess(node.pinDir).endpointsMapId;

    await setupNode(lab, node, pods);

    const after = dumpFromAnotherProcess(node.pinDir);
    expect(after.endpointsMapId).toBe(idBefore);
    expect(after.ipcache.map(([k]) => k.prefix).sort()).toEqual([
      '198.18.1.0/24',
      'fd00:18:1::/64',
    ]);
    const ctAfter = [...maps.conntrack.keys()].filter((k) => k.src === a.v4 && k.dst === b.v4);
    expect(ctAfter).toEqual(ctBefore);
    expect(await lab.ping(a, b.v6, 1)).toBe(true);
  });

  test('an agent upgrading from the shared conntrack map moves each flow into its pod’s table', async () => {
    const lib = Libbpf.open();
    expect(await lab.ping(a, b.v4, 1)).toBe(true);
    const flows = (() => {
      using now = openPinnedDatapath(lib, node.pinDir);
      return [...now.conntrack.entries()];
    })();
    const ab = flows.filter(([k]) => k.src === a.v4 && k.dst === b.v4);
    expect(new Set(ab.map(([k]) => k.direction))).toEqual(new Set(['egress', 'ingress']));
    // the previous datapath's pin: one LRU hash of every flow
    const pin = join(node.pinDir, 'dy_conntrack');
    rmSync(pin);
    {
      using shared = lib.createMap(
        {
          type: MapType.LRU_HASH,
          name: 'dy_conntrack',
          keySize: 40,
          valueSize: 32,
          maxEntries: 1024,
        },
        conntrackCodec,
      );
      for (const [k, v] of flows) shared.update(k, v);
      lib.pinFd(shared.fd, pin);
    }

    await setupNode(lab, node, pods);

    using upgraded = openPinnedDatapath(lib, node.pinDir);
    expect(upgraded.conntrack.map.info.type).toBe(MapType.HASH_OF_MAPS);
    const tableOf = (id: number) => {
      using t = upgraded.conntrack.open(id);
      return [...(t?.keys() ?? [])].filter((k) => k.src === a.v4 && k.dst === b.v4);
    };
    // egress belongs to the source pod (a, endpoint 1), ingress to the destination (b, 2)
    const count = (d: string) => ab.filter(([k]) => k.direction === d).length;
    expect(tableOf(1).map((k) => k.direction)).toEqual(Array(count('egress')).fill('egress'));
    expect(tableOf(2).map((k) => k.direction)).toEqual(Array(count('ingress')).fill('ingress'));
    expect([...upgraded.conntrack.keys()].length).toBe(flows.length);
    expect(await lab.ping(a, b.v6, 1)).toBe(true);
  });
});
