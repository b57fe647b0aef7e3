// The reconciler writes only what was marked; the pure desiredMaps() says what every map should
// hold. After any sequence of endpoint, router and policy changes, each followed by its marks and
// a flush, the (fake) kernel maps must equal desiredMaps() exactly, except that a live endpoint
// whose policy is unknown keeps the policy entries it had: a mark forgotten somewhere, a stale
// entry left behind, a removed endpoint's entry kept, or an unknown one's entry dropped, fails.
// Conntrack tables exist for exactly the live endpoints.
import type { DirectionPolicyValue } from '@dyad/contracts';
import { endpointsCodec, ipcacheCodec, policyCidrCodec, policyCodec } from '@dyad/libbpf-ts';
import type { IpcacheInfo } from '@dyad/libbpf-ts';
import { prng } from '@dyad/testbed';
import { describe, expect, it } from 'vitest';
import { desiredMaps, endpointView } from '../src/datapath/desired-maps.ts';
import type { DesiredInputs, PodPolicy } from '../src/datapath/desired-maps.ts';
import { MirroredMap } from '../src/datapath/mirror.ts';
import type { NodeDatapath } from '../src/datapath/node.ts';
import { DatapathReconciler } from '../src/datapath/reconciler.ts';
import { mapDrift } from '../src/datapath/drift.ts';
import type { Endpoint } from '../src/endpoint.ts';
import { fakeMap } from './helpers/fake-map.ts';

const NO_DRIFT = { endpoints: 0, ipcache: 0, policy: 0, policyCidr: 0 };
const SEEDS = Number(process.env['DYAD_RECONCILER_SEEDS'] ?? 200);
const STEPS = 60;

function fakeDatapath() {
  const maps = {
    endpoints: fakeMap(endpointsCodec),
    ipcache: fakeMap(ipcacheCodec),
    policy: fakeMap(policyCodec),
    policyCidr: fakeMap(policyCidrCodec),
  };
  const never = () => undefined; // the test flushes by hand
  const tables = new Set<number>([42]); // a leftover of an endpoint gone before the restart
  const conntrack = {
    tables,
    ensure: (id: number) => {
      if (tables.has(id)) return false;
      tables.add(id);
      return true;
    },
    remove: (id: number) => tables.delete(id),
    endpointIds: () => [...tables],
  };
  const dp = {
    conntrack,
    endpoints: new MirroredMap(maps.endpoints.map, never),
    ipcache: new MirroredMap(maps.ipcache.map, never),
    policy: new MirroredMap(maps.policy.map, never),
    policyCidr: new MirroredMap(maps.policyCidr.map, never),
    flush() {
      dp.endpoints.flush();
      dp.ipcache.flush();
      dp.policy.flush();
      dp.policyCidr.flush();
    },
  };
  return { dp, maps };
}

/** A map's content as sorted key=value hex lines: the kernel's view, spelling-independent. */
function content(store: ReadonlyMap<string, Buffer>): string[] {
  return [...store].map(([k, v]) => `${k}=${v.toString('hex')}`).sort();
}

function wantContent<K, V>(
  codec: {
    key: { size: number; encodeInto(k: K, b: Buffer, at: number): void };
    value: { size: number; encodeInto(v: V, b: Buffer, at: number): void };
  },
  entries: Iterable<readonly [K, V]>,
): string[] {
  const out = new Map<string, string>();
  for (const [k, v] of entries) {
    const kb = Buffer.alloc(codec.key.size);
    const vb = Buffer.alloc(codec.value.size);
    codec.key.encodeInto(k, kb, 0);
    codec.value.encodeInto(v, vb, 0);
    out.set(kb.toString('hex'), vb.toString('hex'));
  }
  return [...out].map(([k, v]) => `${k}=${v}`).sort();
}

function endpoint(i: number, id: number): Endpoint {
  return {
    containerId: `c${i}`,
    ifName: 'eth0',
    network: 'dyad',
    netns: `/run/netns/p${i}`,
    pod: { namespace: 'ns', name: `pod${i % 7}` },
    endpointId: id,
    ipv4: { address: `198.18.0.${10 + i}`, cidr: '198.18.0.0/24', gateway: '198.18.0.1' },
    ...(i % 3 === 0
      ? {}
      : {
          ipv6: {
            address: `fd00:d1ad::${(10 + i).toString(16)}`,
            cidr: 'fd00:d1ad::/120',
            gateway: 'fd00:d1ad::1',
          },
        }),
    mac: `0a:00:00:00:00:${(i + 16).toString(16)}`,
    hostIfName: `dy${i}`,
    hostIfindex: 100 + i,
    hostMac: `0e:00:00:00:00:${(i + 16).toString(16)}`,
    mtu: 1500,
    identity: 3,
    flags: 0,
    createdAt: '2026-01-01T00:00:00.000Z',
  };
}

function run(seed: number): Promise<void> {
  const rand = prng(seed);
  const pick = (n: number) => Math.floor(rand() * n);
  const { dp, maps } = fakeDatapath();
  // kernel leftovers from before: entries no input calls for, which the first full pass removes
  maps.ipcache.map.updateBatch([
    [{ prefix: '198.19.9.0/24' }, { identity: 9, nodeId: 0, flags: 0 }],
  ]);
  maps.policy.map.updateBatch([
    [
      { endpointId: 99, identity: 0, direction: 'ingress', proto: 0, port: 0, portPrefixLen: 0 },
      { action: 1, ruleId: 1 },
    ],
  ]);
  dp.endpoints.load();
  dp.ipcache.load();
  dp.policy.load();
  dp.policyCidr.load();

  const endpoints = new Map<string, Endpoint>();
  const router = new Map<string, IpcacheInfo>();
  const policies = new Map<string, PodPolicy>();
  let nextId = 1;
  const inputs = (): DesiredInputs => ({
    endpoints: [...endpoints.values()],
    router: { synced: true, entries: router },
    policy: { synced: true, policies },
    nodeId: 7,
    initIdentity: 3,
  });
  const rec = new DatapathReconciler({
    datapath: dp as unknown as NodeDatapath,
    inputs,
    onView: (ep, view) => {
      const key = `${ep.containerId}/${ep.ifName}`;
      const cur = endpoints.get(key);
      if (cur) endpoints.set(key, { ...cur, ...view });
    },
    schedule: () => undefined,
    onError: (e) => {
      throw e;
    },
  });

  const kernel = {
    endpoints: maps.endpoints.map,
    ipcache: maps.ipcache.map,
    policy: maps.policy.map,
    policyCidr: maps.policyCidr.map,
  } as unknown as Parameters<typeof mapDrift>[1];
  // what the kernel held before the change: an unknown live endpoint must still hold it
  let before = { policy: [...maps.policy.map.entries()], cidr: [...maps.policyCidr.map.entries()] };
  const check = async (what: string) => {
    await rec.flush();
    const want = desiredMaps(inputs());
    const ctx = `seed ${seed}, after ${what}`;
    const live = new Set([...endpoints.values()].map((e) => e.endpointId));
    const kept = (k: { endpointId: number }) =>
      live.has(k.endpointId) && !want.policyKnown.has(k.endpointId);
    expect(content(maps.endpoints.store), ctx).toEqual(wantContent(endpointsCodec, want.endpoints));
    expect(content(maps.ipcache.store), ctx).toEqual(wantContent(ipcacheCodec, want.ipcache));
    expect(content(maps.policy.store), ctx).toEqual(
      wantContent(policyCodec, [...want.policy, ...before.policy.filter(([k]) => kept(k))]),
    );
    expect(content(maps.policyCidr.store), ctx).toEqual(
      wantContent(policyCidrCodec, [...want.policyCidr, ...before.cidr.filter(([k]) => kept(k))]),
    );
    // the agent's own report (status.drift) agrees: nothing differs
    expect(mapDrift(want, kernel, live), ctx).toEqual(NO_DRIFT);
    before = { policy: [...maps.policy.map.entries()], cidr: [...maps.policyCidr.map.entries()] };
    expect([...dp.conntrack.tables].sort(), ctx).toEqual(
      [...new Set(inputs().endpoints.map((e) => e.endpointId))].sort(),
    );
    // every stored endpoint carries the identity and flags its inputs call for
    for (const ep of endpoints.values())
      expect({ identity: ep.identity, flags: ep.flags }, ctx).toEqual(endpointView(ep, inputs()));
  };

  // a restart: endpoints already there, one with a policy entry no policy calls for any more
  for (const i of [0, 1, 2]) endpoints.set(`c${i}/eth0`, endpoint(i, nextId++));
  maps.policy.map.updateBatch([
    [
      { endpointId: 1, identity: 5, direction: 'egress', proto: 17, port: 53, portPrefixLen: 16 },
      { action: 1, ruleId: 4 },
    ],
  ]);
  dp.policy.load();
  before = { policy: [...maps.policy.map.entries()], cidr: [...maps.policyCidr.map.entries()] };
  rec.markAll();
  return runSteps();

  function direction(): DirectionPolicyValue {
    const allow = () =>
      rand() < 0.3 ? [{}] : [{ protocol: 'TCP' as const, ports: { from: 80, to: 80 + pick(3) } }];
    const v4 = ['198.18.0.0/15', '198.18.4.0/24', '198.18.4.7/32'];
    const v6 = ['fd00::/8', 'fd00:d1ad::/104'];
    return {
      enforce: rand() < 0.6,
      peers: Array.from({ length: pick(3) }, () => ({
        identities: [100 + pick(5)],
        allow: allow(),
      })),
      cidrs: {
        IPv4: v4
          .filter(() => rand() < 0.4)
          .map((prefix) => ({ prefix, allow: rand() < 0.3 ? [] : allow() })),
        IPv6: v6.filter(() => rand() < 0.4).map((prefix) => ({ prefix, allow: allow() })),
      },
    };
  }

  async function runSteps(): Promise<void> {
    await check('the first full pass');
    // a stale entry the reconciler never wrote, and a lost write, are each counted once
    maps.ipcache.map.updateBatch([
      [{ prefix: '198.19.8.0/24' }, { identity: 8, nodeId: 0, flags: 0 }],
    ]);
    const first = inputs().endpoints[0];
    const firstWant = desiredMaps(inputs()).endpoints.find(
      ([k]) => first !== undefined && k.address === first.ipv4?.address,
    );
    if (firstWant !== undefined)
      maps.endpoints.map.updateBatch([
        [firstWant[0], { ...firstWant[1], flags: firstWant[1].flags ^ 1 }],
      ]);
    const live = new Set(inputs().endpoints.map((e) => e.endpointId));
    expect(mapDrift(desiredMaps(inputs()), kernel, live), `seed ${seed}`).toEqual({
      ...NO_DRIFT,
      ipcache: 1,
      endpoints: firstWant === undefined ? 0 : 1,
    });
    // as after an agent restart: the mirrors read the kernel, a full pass repairs both
    dp.endpoints.load();
    dp.ipcache.load();
    rec.markAll();
    await check('repairing them');
    for (let step = 0; step < STEPS; step++) {
      const op = pick(7);
      const i = pick(12);
      const key = `c${i}/eth0`;
      if (op === 0 || op === 1) {
        const old = endpoints.get(key);
        if (old) {
          endpoints.delete(key);
          rec.markEndpoint(old);
        } else {
          const ep = endpoint(i, nextId++);
          endpoints.set(key, ep);
          rec.markEndpoint(ep);
        }
      } else if (op === 2 || op === 3) {
        // router entries, some of them for local endpoints' own addresses
        const prefix = rand() < 0.5 ? `198.18.0.${10 + i}/32` : `198.18.${1 + pick(3)}.0/24`;
        if (rand() < 0.3) router.delete(prefix);
        else router.set(prefix, { identity: 100 + pick(5), nodeId: pick(3), flags: 0 });
        rec.markPrefix(prefix);
      } else if (op === 4 || op === 5) {
        const pod = `pod${i % 7}`;
        if (rand() < 0.3) policies.delete(`ns/${pod}`);
        else policies.set(`ns/${pod}`, { ingress: direction(), egress: direction() });
        rec.markPod('ns', pod);
      } else {
        rec.markAll();
      }
      await check(`step ${step} (op ${op})`);
    }
  }
}

describe('the reconciler against the pure desired state', () => {
  it(`writes exactly desiredMaps() after every change (${SEEDS} seeded runs)`, async () => {
    for (let seed = 1; seed <= SEEDS; seed++) await run(seed);
  });
});
