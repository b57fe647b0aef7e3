// Node-local IPAM against real processes: the agent allocates from its node's blocks, durably,
// with no network round trip. NATS away, a kill -9 in a burst of ADDs, a lost state file, a full
// block and an exhausted pool: every pod that got a result keeps its addresses, no two share one,
// and nothing leaks.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BusSubscription } from '@dyad/bus';
import {
  AddressesExhausted,
  IPAM_EXHAUSTED_FILTER,
  IPAM_ALLOCATIONS_STREAM,
  IPAM_KV_BUCKET,
  IpamKey,
  K8sStream,
  ipamAllocFilter,
  ipamHeldSubject,
} from '@dyad/contracts';
import type { PayloadOf } from '@dyad/contracts';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { ensureBpfBuilt, ensureCniBuilt } from './helpers/build.ts';
import { kernelRequired, kernelSkipReason } from './helpers/kernel.ts';
import { AgentHarness, apiGet } from './helpers/harness.ts';
import type { AgentHandle, CniRun } from './helpers/harness.ts';

const skip = kernelSkipReason();
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

interface Result {
  ips: Array<{ address: string }>;
}
interface Failure {
  code: number;
  msg: string;
  details: string;
}

/** A runtime's view of one sandbox: its netns and how to call dyad-cni for it. */
class Sandboxes {
  readonly lab: AgentHarness;
  readonly agent: () => AgentHandle;

  constructor(lab: AgentHarness, agent: () => AgentHandle) {
    this.lab = lab;
    this.agent = agent;
  }

  env(cmd: string, netns: string, id: string): Record<string, string> {
    return {
      CNI_COMMAND: cmd,
      CNI_CONTAINERID: id,
      CNI_NETNS: netns,
      CNI_IFNAME: 'eth0',
      CNI_ARGS: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${id};K8S_POD_UID=uid-${id}`,
      CNI_PATH: '/nonexistent',
    };
  }

  conf(): string {
    const a = this.agent();
    return JSON.stringify({
      cniVersion: '1.1.0',
      name: a.network,
      type: 'dyad-cni',
      agentSocket: a.cniSocket,
    });
  }

  call(cmd: 'ADD' | 'DEL' | 'CHECK', netns: string, id: string): Promise<CniRun> {
    return this.lab.dyadCni(this.env(cmd, netns, id), this.conf());
  }
}

function addressesOf(r: CniRun): string[] {
  return (JSON.parse(r.stdout) as Result).ips.map((i) => i.address.split('/')[0] ?? '');
}

/** Every address appears once: two sandboxes never share one, per family. */
function expectDistinct(byContainer: ReadonlyMap<string, readonly string[]>): void {
  const seen = new Map<string, string>();
  for (const [id, addrs] of byContainer)
    for (const a of addrs) {
      expect(seen.get(a), `${a} given to ${seen.get(a)} and ${id}`).toBeUndefined();
      seen.set(a, id);
    }
}

async function runPool<T>(items: readonly T[], width: number, fn: (t: T) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) {
        const t = items[next++] as T;
        await fn(t);
      }
    }),
  );
}

describe.skipIf(skip !== undefined)('node-local IPAM', () => {
  const lab = new AgentHarness();
  let agent: AgentHandle;
  let sb: Sandboxes;

  beforeAll(async () => {
    ensureBpfBuilt();
    ensureCniBuilt();
    await lab.start();
    await lab.addNode('n1');
    agent = await lab.startAgent('n1');
    sb = new Sandboxes(lab, () => agent);
  });

  afterAll(async () => {
    await lab.cleanup();
  });

  test('with nats-server stopped, ADD and DEL succeed in both families; the records reach NATS after it returns', async () => {
    const kept = lab.addPodNetns('nonats1');
    const gone = lab.addPodNetns('nonats2');
    await lab.nats.kill();
    try {
      const a = await sb.call('ADD', kept, 'nonats1');
      expect(a.code, a.stdout).toBe(0);
      const fams = addressesOf(a).map((x) => (x.includes(':') ? 'IPv6' : 'IPv4'));
      expect(fams.sort()).toEqual(['IPv4', 'IPv6']);
      const b = await sb.call('ADD', gone, 'nonats2');
      expect(b.code, b.stdout).toBe(0);
      expect((await sb.call('DEL', gone, 'nonats2')).code).toBe(0);
      expect(lab.ipamHeld('n1', 'nonats1')).toBe(true);
      expect(lab.ipamHeld('n1', 'nonats2')).toBe(false);
    } finally {
      await lab.nats.restart();
    }
    await vi.waitFor(
      async () => {
        expect(await lab.allocationRecord('n1', 'nonats1')).toBe('allocated');
        expect(await lab.allocationRecord('n1', 'nonats2')).toBe('released');
      },
      { timeout: 60_000, interval: 200 },
    );
    expect((await sb.call('DEL', kept, 'nonats1')).code).toBe(0);
  });

  test('kill -9 in the middle of 200 concurrent ADDs: after restart, retries and DELs leave no duplicate and no leak', async () => {
    const ids = Array.from({ length: 200 }, (_, i) => `burst${i}`);
    const netns = new Map(ids.map((id) => [id, lab.addPodNetns(id)]));
    const answered = new Map<string, string[]>();
    let killed: Promise<unknown> | undefined;
    await runPool(ids, 50, async (id) => {
      const r = await sb.call('ADD', netns.get(id) as string, id);
      if (r.code === 0) answered.set(id, addressesOf(r));
      // the agent dies once a quarter of the pods have their result, with the rest in flight
      if (answered.size === 50 && killed === undefined) killed = agent.proc.kill();
    });
    await killed;
    expect(answered.size).toBeGreaterThanOrEqual(50);
    expect(answered.size).toBeLessThan(200);
    agent = await lab.startAgent('n1', agent);

    // the runtime retries every ADD that got no result; a repeat of an answered one is the same
    const final = new Map<string, string[]>();
    await runPool(ids, 20, async (id) => {
      const r = await sb.call('ADD', netns.get(id) as string, id);
      expect(r.code, `${id}: ${r.stdout}`).toBe(0);
      final.set(id, addressesOf(r));
    });
    for (const [id, addrs] of answered) expect(final.get(id), id).toEqual(addrs);
    expectDistinct(final);
    for (const id of ids.slice(0, 20))
      expect((await sb.call('CHECK', netns.get(id) as string, id)).code, id).toBe(0);

    await runPool(ids, 20, async (id) => {
      const r = await sb.call('DEL', netns.get(id) as string, id);
      expect(r.code, `${id}: ${r.stdout}`).toBe(0);
    });
    expect(lab.vethsOf(agent.netns)).toEqual([]);
    expect((await apiGet(agent.apiSocket, '/v1/bpf/endpoints')).body).toEqual([]);
    for (const id of ids) expect(lab.ipamHeld('n1', id), id).toBe(false);
  });

  test('after its state file is deleted the agent rebuilds from the kernel and NATS: no duplicate, old pods still served', async () => {
    const old = ['lost0', 'lost1', 'lost2'];
    const netns = new Map([...old, 'new0', 'new1', 'new2'].map((id) => [id, lab.addPodNetns(id)]));
    const before = new Map<string, string[]>();
    for (const id of old) {
      const r = await sb.call('ADD', netns.get(id) as string, id);
      expect(r.code, r.stdout).toBe(0);
      before.set(id, addressesOf(r));
    }
    // the rebuild reads what the agent published; wait until it is there
    await vi.waitFor(
      async () => {
        for (const id of old) expect(await lab.allocationRecord('n1', id)).toBe('allocated');
      },
      { timeout: 30_000, interval: 200 },
    );
    await agent.proc.kill();
    rmSync(agent.stateFile);
    agent = await lab.startAgent('n1', agent);

    const all = new Map(before);
    for (const id of ['new0', 'new1', 'new2']) {
      const r = await sb.call('ADD', netns.get(id) as string, id);
      expect(r.code, r.stdout).toBe(0);
      all.set(id, addressesOf(r));
    }
    expectDistinct(all);
    for (const id of old) {
      const check = await sb.call('CHECK', netns.get(id) as string, id);
      expect(check.code, check.stdout).toBe(0);
    }
    for (const id of all.keys())
      expect((await sb.call('DEL', netns.get(id) as string, id)).code, id).toBe(0);
    expect(lab.vethsOf(agent.netns)).toEqual([]);
    for (const id of all.keys()) expect(lab.ipamHeld('n1', id), id).toBe(false);
  });
  test("upgrade in place: an agent finding the previous design's state adopts its endpoints and the slots ipam held, readdressing nothing", async () => {
    const netns = new Map(['up0', 'up1', 'up2'].map((id) => [id, lab.addPodNetns(id)]));
    const before = new Map<string, string[]>();
    for (const id of ['up0', 'up1']) {
      const r = await sb.call('ADD', netns.get(id) as string, id);
      expect(r.code, r.stdout).toBe(0);
      before.set(id, addressesOf(r));
    }
    await agent.proc.kill();
    // what the previous agent left: its state file (v1, no allocations in it) ...
    const v2 = JSON.parse(readFileSync(agent.stateFile, 'utf8')) as {
      node: string;
      objectHash?: string;
      endpoints: unknown[];
      ipam: { blocks: Array<{ family: string; cidr: string }> };
    };
    writeFileSync(
      agent.stateFile,
      JSON.stringify({ v: 1, node: v2.node, objectHash: v2.objectHash, endpoints: v2.endpoints }),
    );
    // ... and a slot ipam's replicas held for a container with no endpoint (an ADD in flight)
    const v4Block = v2.ipam.blocks.find((b) => b.family === 'IPv4')?.cidr ?? '';
    const v6Block = v2.ipam.blocks.find((b) => b.family === 'IPv6')?.cidr ?? '';
    const base4 = v4Block.split('/')[0]?.split('.').slice(0, 3).join('.') ?? '';
    const base6 = v6Block.split('/')[0] ?? '';
    const legacy = {
      slot: 200,
      ips: { IPv4: `${base4}.202`, IPv6: `${base6.replace(/::$/, '')}::ca` },
    };
    const kv = await lab.bus.kv(IPAM_KV_BUCKET);
    await kv.put(
      IpamKey.slot('n1', legacy.slot),
      new TextEncoder().encode(
        JSON.stringify({
          containerId: 'inflight0',
          namespace: 'default',
          pod: 'inflight0',
          podUid: 'uid-inflight0',
          ips: legacy.ips,
          at: Date.now(),
        }),
      ),
    );
    // the previous design's agent published no records of its own, and ipam is upgraded too
    await lab.bus.purgeSubjects(IPAM_ALLOCATIONS_STREAM, ipamHeldSubject('n1'));
    await lab.bus.purgeSubjects(IPAM_ALLOCATIONS_STREAM, ipamAllocFilter('n1'));
    await lab.stopIpam();
    await lab.startIpam('ipam-upgraded');
    agent = await lab.startAgent('n1', agent);

    // adopted the moment the blocks arrived; on disk with the next write
    await vi.waitFor(() => {
      expect(lab.ipamHeld('n1', 'up0')).toBe(true);
      expect(lab.ipamHeld('n1', 'inflight0')).toBe(true);
    });
    for (const id of ['up0', 'up1']) {
      const check = await sb.call('CHECK', netns.get(id) as string, id);
      expect(check.code, check.stdout).toBe(0);
    }
    const fresh = await sb.call('ADD', netns.get('up2') as string, 'up2');
    expect(fresh.code, fresh.stdout).toBe(0);
    expectDistinct(
      new Map([...before, ['up2', addressesOf(fresh)], ['inflight0', Object.values(legacy.ips)]]),
    );
    // once the agent has reported its blocks, ipam drops the legacy keys
    await vi.waitFor(
      async () => {
        const e = await kv.get(IpamKey.slot('n1', legacy.slot));
        expect(e === undefined || e.operation !== 'PUT').toBe(true);
      },
      { timeout: 30_000, interval: 200 },
    );
    for (const id of ['up0', 'up1', 'up2'])
      expect((await sb.call('DEL', netns.get(id) as string, id)).code).toBe(0);
  });

  test('nats-server restarted on an empty data directory: ipam and the agent converge, every pod keeps its addresses', async () => {
    const ids = ['empty0', 'empty1'];
    const netns = new Map([...ids, 'empty2'].map((id) => [id, lab.addPodNetns(id)]));
    const before = new Map<string, string[]>();
    for (const id of ids) {
      const r = await sb.call('ADD', netns.get(id) as string, id);
      expect(r.code, r.stdout).toBe(0);
      before.set(id, addressesOf(r));
    }
    const blocksBefore = await lab.nodeBlocks('n1');
    expect(blocksBefore.length).toBeGreaterThan(0);

    await lab.nats.kill();
    rmSync(lab.nats.storeDir, { recursive: true, force: true });
    mkdirSync(lab.nats.storeDir);
    await lab.nats.restart();
    await vi.waitFor(() => expect(lab.bus.isConnected()).toBe(true), { timeout: 30_000 });
    // kube-bridge's convergence publishes every Node again into the empty stream
    await lab.bus.ensureStreams([K8sStream]);
    await lab.announceNode('n1');

    // the agent publishes its held blocks and allocations again; ipam rebuilds n1 from them
    await vi.waitFor(
      async () => {
        for (const id of ids) expect(await lab.allocationRecord('n1', id)).toBe('allocated');
        expect(await lab.nodeBlocks('n1')).toEqual(blocksBefore);
      },
      { timeout: 120_000, interval: 500 },
    );
    // a new node gets other blocks, and a new pod on n1 other addresses
    await lab.announceNode('n2');
    await vi.waitFor(async () => expect((await lab.nodeBlocks('n2')).length).toBeGreaterThan(0), {
      timeout: 60_000,
      interval: 200,
    });
    const n2 = await lab.nodeBlocks('n2');
    for (const b of n2) expect(blocksBefore.map((x) => x.cidr)).not.toContain(b.cidr);
    const fresh = await sb.call('ADD', netns.get('empty2') as string, 'empty2');
    expect(fresh.code, fresh.stdout).toBe(0);
    expectDistinct(new Map([...before, ['empty2', addressesOf(fresh)]]));
    for (const id of ids) {
      const check = await sb.call('CHECK', netns.get(id) as string, id);
      expect(check.code, check.stdout).toBe(0);
    }
    for (const id of [...ids, 'empty2'])
      expect((await sb.call('DEL', netns.get(id) as string, id)).code).toBe(0);
  });
});

describe.skipIf(skip !== undefined)('node-local IPAM with small blocks', () => {
  // two /28 and two /124 blocks in the pools: 13 pod slots per set, two sets in the cluster
  const lab = new AgentHarness({
    ipamEnv: {
      DYAD_CLUSTER_POOL_IPV4_CIDR: '198.18.200.0/27',
      DYAD_CLUSTER_POOL_IPV6_CIDR: 'fd00:d1ad:200::/123',
      DYAD_CLUSTER_POOL_IPV4_MASK_SIZE: '28',
      DYAD_CLUSTER_POOL_IPV6_MASK_SIZE: '124',
    },
  });
  let agent: AgentHandle;
  let sb: Sandboxes;
  let exhausted: BusSubscription | undefined;
  const events: Array<PayloadOf<typeof AddressesExhausted>> = [];

  beforeAll(async () => {
    ensureBpfBuilt();
    ensureCniBuilt();
    await lab.start();
    exhausted = lab.bus.subscribe([AddressesExhausted], IPAM_EXHAUSTED_FILTER, (d) => {
      events.push(d.value);
    });
    await lab.bus.flush();
    await lab.addNode('s1');
    agent = await lab.startAgent('s1', undefined, { DYAD_IPAM_PRE_ALLOCATE: '3' });
    sb = new Sandboxes(lab, () => agent);
  });

  afterAll(async () => {
    await exhausted?.stop();
    await lab.cleanup();
  });

  test('a second block per family when the first runs full; then the exhausted pool is CNI code 100 and an event', async () => {
    const got = new Map<string, string[]>();
    const netns = (id: string) => lab.addPodNetns(id);
    for (let i = 0; i < 26; i++) {
      const id = `fill${i}`;
      const r = await sb.call('ADD', netns(id), id);
      expect(r.code, `${id}: ${r.stdout}`).toBe(0);
      got.set(id, addressesOf(r));
    }
    expectDistinct(got);
    // the IPv4 addresses come from both /28s of the pool: 198.18.200.0/28 and .16/28
    const v4Blocks = new Set(
      [...got.values()]
        .flat()
        .filter((a) => !a.includes(':'))
        .map((a) => Number(a.split('.')[3]) >> 4),
    );
    expect(v4Blocks).toEqual(new Set([0, 1]));
    const status = (await apiGet(agent.apiSocket, '/v1/status')).body as { ready: boolean };
    expect(status.ready).toBe(true);

    // 26 slots in the pool's two sets are taken: the next ADD gets the spec's error
    const r = await sb.call('ADD', netns('over'), 'over');
    const err = JSON.parse(r.stdout) as Failure;
    expect(err.code).toBe(100);
    expect(err.details).toMatch(/pool/);
    await vi.waitFor(() => {
      expect(events.some((e) => e.node === 's1' && e.scope === 'cluster-pool')).toBe(true);
      expect(events.some((e) => e.node === 's1' && e.scope === 'node-block')).toBe(true);
    });
    expect(lab.ipamHeld('s1', 'over')).toBe(false);
    // a pod that goes frees its slot for the next
    expect((await sb.call('DEL', join('/run/netns', `${lab.prefix}-fill3`), 'fill3')).code).toBe(0);
    const again = await sb.call('ADD', netns('over2'), 'over2');
    expect(again.code, again.stdout).toBe(0);
  });
});
