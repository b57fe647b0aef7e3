import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  AGENT_STREAM,
  DeadLetterHeader,
  ALL_STREAMS,
  EndpointReport,
  EndpointSliceEvent,
  IPAM_NODES_STREAM,
  IpamNodeEvent,
  K8S_STREAM,
  NodeEvent,
  POLICY_STREAM,
  PodIdentityEvent,
  PolicyFilter,
  ROUTER_STREAM,
  ReservedIdentity,
  RouterIpcacheEvent,
  RouterRouteEvent,
  RouterServiceEvent,
  RouterSyncEvent,
  ServiceEvent,
  agentEndpointFilter,
  agentEndpointSubject,
  deadLetterSubject,
  ipamNodeSubject,
  k8sKindFilter,
  k8sObjectSubject,
  policyPodSubject,
  routerNodeFilter,
} from '@dyad/contracts';
import type { PayloadOf } from '@dyad/contracts';
import type { Bus } from '@dyad/bus';
import { connectBus } from '@dyad/bus';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { createRouterMetrics } from '../src/metrics.ts';
import type { RouterMetrics } from '../src/metrics.ts';
import { RouterService } from '../src/service.ts';
import { emptyStored, storedFromMessages } from '../src/sink.ts';
import type { StoredNode } from '../src/sink.ts';
import { busRouterPort } from '../src/stream-port.ts';

const OUTPUT = [RouterIpcacheEvent, RouterRouteEvent, RouterSyncEvent, RouterServiceEvent];

async function connect(url: string, name: string): Promise<Bus> {
  const bus = await connectBus({
    servers: url,
    name,
    logger: createLogger({ service: name, level: 'silent' }),
    registry: createMetrics(),
    reconnect: { timeWaitMs: 200, jitterMs: 50 },
  });
  await bus.ensureStreams(ALL_STREAMS);
  return bus;
}

function startRouter(bus: Bus, metrics = createRouterMetrics(createMetrics())): RouterService {
  return new RouterService({
    bus,
    port: busRouterPort(bus),
    logger: createLogger({
      service: 'router-test',
      level: process.env.DYAD_TEST_LOG === '1' ? 'debug' : 'silent',
    }),
    metrics,
    tombstoneTtl: '1h',
    flushDelayMs: 5,
    resyncIntervalMs: 3_600_000,
    publishConcurrency: 64,
  });
}

function eventually<T>(check: () => T | Promise<T>, timeout = 30_000): Promise<T> {
  return vi.waitFor(check, { timeout, interval: 100 });
}

/** How many messages the router's inputs hold (last value per subject, tombstones included). */
async function storedInputs(bus: Bus): Promise<number> {
  const sources = await Promise.all([
    bus.snapshot([NodeEvent], { stream: K8S_STREAM, filterSubjects: [k8sKindFilter('Node')] }),
    bus.snapshot([IpamNodeEvent], { stream: IPAM_NODES_STREAM }),
    bus.snapshot([EndpointReport], {
      stream: AGENT_STREAM,
      filterSubjects: [agentEndpointFilter()],
    }),
    bus.snapshot([PodIdentityEvent], {
      stream: POLICY_STREAM,
      filterSubjects: [PolicyFilter.pods],
    }),
    bus.snapshot([ServiceEvent], {
      stream: K8S_STREAM,
      filterSubjects: [k8sKindFilter('Service')],
    }),
    bus.snapshot([EndpointSliceEvent], {
      stream: K8S_STREAM,
      filterSubjects: [k8sKindFilter('EndpointSlice')],
    }),
  ]);
  return sources.reduce((n, s) => n + s.size, 0);
}

/** How many input messages a router has applied, of every source. */
async function inputsApplied(metrics: RouterMetrics): Promise<number> {
  return (await metrics.inputEvents.get()).values.reduce((n, v) => n + v.value, 0);
}

const NODES = {
  a: { v4: '198.19.0.1', v6: 'fd00:19::1', c4: '198.18.1.0/24', c6: 'fd00:18:1::/112' },
  b: { v4: '198.19.0.2', v6: 'fd00:19::2', c4: '198.18.2.0/24', c6: 'fd00:18:2::/112' },
  'c.lab': { v4: '198.19.0.3', v6: 'fd00:19::3', c4: '198.18.3.0/24', c6: 'fd00:18:3::/112' },
} as const;
type NodeName = keyof typeof NODES;

async function publishNode(bus: Bus, name: NodeName, op: 'upsert' | 'delete' = 'upsert') {
  const n = NODES[name];
  await bus.jsPublish(NodeEvent, k8sObjectSubject('Node', undefined, name), {
    op,
    object: {
      metadata: { uid: `uid-${name}`, name, resourceVersion: '1', labels: {} },
      spec: { podCIDRs: [], unschedulable: false },
      status: {
        addresses: [
          { type: 'Hostname', address: name },
          { type: 'InternalIP', address: n.v4 },
          { type: 'InternalIP', address: n.v6 },
        ],
        ready: true,
      },
    },
  });
  await bus.jsPublish(IpamNodeEvent, ipamNodeSubject(name), {
    op,
    node: name,
    blocks: [
      { family: 'IPv4', cidr: n.c4, gateway: n.c4.replace('0/24', '1') },
      { family: 'IPv6', cidr: n.c6, gateway: n.c6.replace('/112', '1') },
    ],
  });
}

function endpoint(node: NodeName, pod: string, v4: string, v6: string) {
  return {
    node,
    containerId: `ctr-${pod}`,
    ifName: 'eth0',
    endpointId: 1,
    network: 'dyad',
    pod: { namespace: 'lab', name: pod },
    ipv4: v4,
    ipv6: v6,
    mac: '0a:00:00:00:00:01',
    hostIfName: `dyh${pod}`,
    hostIfindex: 5,
    hostMac: '0e:00:00:00:00:01',
    identity: 0,
    policy: { ingress: 'disabled' as const, egress: 'disabled' as const },
    createdAt: '2025-01-01T00:00:00.000Z',
  };
}

async function publishEndpoint(
  bus: Bus,
  ep: ReturnType<typeof endpoint>,
  op: 'upsert' | 'delete' = 'upsert',
) {
  await bus.jsPublish(EndpointReport, agentEndpointSubject(ep.node, ep.containerId, ep.ifName), {
    op,
    endpoint: ep,
  });
}

type Snapshot = Map<string, { value: PayloadOf<(typeof OUTPUT)[number]>; streamSeq: number }>;

async function snapshotAll(bus: Bus): Promise<Snapshot> {
  return bus.snapshot(OUTPUT, { stream: ROUTER_STREAM });
}

async function nodeState(bus: Bus, node: string): Promise<StoredNode> {
  const snap = await bus.snapshot(OUTPUT, {
    stream: ROUTER_STREAM,
    filterSubjects: [routerNodeFilter(node)],
  });
  return storedFromMessages([...snap.values()].map((d) => d.value)).get(node) ?? emptyStored();
}

describe('router over NATS', () => {
  let nats: NatsServer;
  let inputs: Bus;
  let routerBus: Bus;
  let router: RouterService;
  // What beforeAll opened, closed in reverse even when it stopped half-way.
  const teardown: (() => unknown)[] = [];
  const web = endpoint('b', 'web', '198.18.2.10', 'fd00:18:2::a');
  const db = endpoint('c.lab', 'db', '198.18.3.10', 'fd00:18:3::a');

  beforeAll(async () => {
    nats = await startNats();
    teardown.push(() => nats.stop());
    inputs = await connect(nats.url, 'router-test-inputs');
    teardown.push(() => inputs.close());
    for (const n of Object.keys(NODES) as NodeName[]) await publishNode(inputs, n);
    await publishEndpoint(inputs, web);
    await publishEndpoint(inputs, db);
    routerBus = await connect(nats.url, 'router');
    teardown.push(() => routerBus.close());
    router = startRouter(routerBus);
    // the test may replace the router: stop the one running then
    teardown.push(() => router.stop());
    await router.start();
  });

  afterAll(async () => {
    for (const undo of teardown.reverse()) await undo();
  });

  it('gives every node the full dual-stack ipcache and native routes to the other nodes', async () => {
    const a = await eventually(async () => {
      const s = await nodeState(inputs, 'a');
      // 3 nodes × (2 addresses + 2 CIDRs) + 2 pods × 2 addresses
      expect(s.ipcache.size).toBe(16);
      return s;
    });
    expect(a.ipcache.get('fd00:18:2::a/128')).toMatchObject({
      kind: 'pod',
      hostNode: 'b',
      hostAddress: 'fd00:19::2',
      local: false,
      pod: { namespace: 'lab', name: 'web' },
    });
    expect(a.ipcache.get('198.18.3.10/32')).toMatchObject({
      hostNode: 'c.lab',
      hostAddress: '198.19.0.3',
    });
    expect(a.ipcache.get('198.19.0.1/32')).toMatchObject({
      kind: 'node',
      identity: 1,
      local: true,
    });
    expect([...a.routes.values()].map((r) => `${r.cidr} via ${r.via}`).sort()).toEqual([
      '198.18.2.0/24 via 198.19.0.2',
      '198.18.3.0/24 via 198.19.0.3',
      'fd00:18:2::/112 via fd00:19::2',
      'fd00:18:3::/112 via fd00:19::3',
    ]);
    expect(a.sync).toMatchObject({ op: 'upsert', node: 'a', ipcacheEntries: 16, routes: 4 });
    const b = await nodeState(inputs, 'b');
    expect(b.ipcache.get('198.18.2.10/32')?.local).toBe(true);
    expect(b.routes.size).toBe(4);
  });

  it("refuses an endpoint record whose addresses lie outside its node's blocks, or whose node is not its subject's: dead-lettered, nothing changed", async () => {
    const refused: Array<{ subject: string; reason: string | undefined }> = [];
    const dlq = inputs.subscribe([EndpointReport], deadLetterSubject('router'), (d) => {
      refused.push({
        subject: d.header(DeadLetterHeader.subject) ?? '',
        reason: d.header(DeadLetterHeader.reason),
      });
    });
    await inputs.flush();
    try {
      // Node a's agent claims web's address, which lies in node b's block.
      const forged = {
        ...endpoint('a', 'forged', web.ipv4, 'fd00:18:1::99'),
        containerId: 'ctr-forged',
      };
      await publishEndpoint(inputs, forged);
      // A record whose payload names node b on node a's subject.
      const misnamed = { ...endpoint('b', 'misnamed', '198.18.2.77', 'fd00:18:2::77') };
      await inputs.jsPublish(
        EndpointReport,
        agentEndpointSubject('a', misnamed.containerId, misnamed.ifName),
        { op: 'upsert', endpoint: misnamed },
      );
      // A valid record, then garbage (an address outside the node's blocks) on its subject.
      const api = endpoint('a', 'api', '198.18.1.20', 'fd00:18:1::14');
      await publishEndpoint(inputs, api);
      await eventually(async () => {
        expect((await nodeState(inputs, 'b')).ipcache.get('198.18.1.20/32')?.hostNode).toBe('a');
      });
      await publishEndpoint(inputs, { ...api, ipv4: '198.18.3.20' });
      await eventually(() => {
        expect(refused).toHaveLength(3);
      });
      expect(refused).toEqual([
        {
          subject: agentEndpointSubject('a', 'ctr-forged', 'eth0'),
          reason: 'outside-node-blocks',
        },
        {
          subject: agentEndpointSubject('a', 'ctr-misnamed', 'eth0'),
          reason: 'subject-mismatch',
        },
        { subject: agentEndpointSubject('a', 'ctr-api', 'eth0'), reason: 'outside-node-blocks' },
      ]);
      await router.idle();
      for (const node of ['a', 'b', 'c.lab']) {
        const st = await nodeState(inputs, node);
        // web's address is still web's, on node b; api keeps its valid addresses.
        expect(st.ipcache.get('198.18.2.10/32')).toMatchObject({ kind: 'pod', hostNode: 'b' });
        expect(st.ipcache.get('198.18.2.10/32')?.pod?.name).toBe('web');
        expect(st.ipcache.get('198.18.1.20/32')?.pod?.name).toBe('api');
        expect(st.ipcache.has('198.18.3.20/32')).toBe(false);
        expect(st.ipcache.has('198.18.2.77/32')).toBe(false);
      }
      // Leave the stream as the later tests expect it.
      await publishEndpoint(inputs, api, 'delete');
      await publishEndpoint(inputs, forged, 'delete');
      await eventually(async () => {
        expect((await nodeState(inputs, 'a')).ipcache.has('198.18.1.20/32')).toBe(false);
      });
    } finally {
      await dlq.stop();
    }
  });

  it("carries the policy service's pod identities into every node's ipcache; unknown until there is one", async () => {
    // Nothing published for either pod yet.
    const before = await nodeState(inputs, 'a');
    expect(before.ipcache.get('198.18.2.10/32')?.identity).toBe(ReservedIdentity.unknown);
    await inputs.jsPublish(PodIdentityEvent, policyPodSubject('lab', 'web'), {
      op: 'upsert',
      namespace: 'lab',
      name: 'web',
      uid: 'uid-lab-web',
      identity: 70001,
      node: 'b',
    });
    await eventually(async () => {
      for (const node of ['a', 'b', 'c.lab']) {
        const s = await nodeState(inputs, node);
        expect(s.ipcache.get('198.18.2.10/32')?.identity).toBe(70001);
        expect(s.ipcache.get('fd00:18:2::a/128')?.identity).toBe(70001);
        expect(s.ipcache.get('198.18.3.10/32')?.identity).toBe(ReservedIdentity.unknown);
      }
    });
  });

  it("publishes each Service per node with the backends of each family; Local keeps the node's own; removal is a tombstone", async () => {
    const meta = (name: string) => ({
      uid: `uid-${name}`,
      name,
      namespace: 'lab',
      resourceVersion: '1',
      labels: {},
    });
    await inputs.jsPublish(ServiceEvent, k8sObjectSubject('Service', 'lab', 'echo'), {
      op: 'upsert',
      object: {
        metadata: meta('echo'),
        spec: {
          clusterIPs: ['198.18.96.10', 'fd00:96::a'],
          ipFamilies: ['IPv4', 'IPv6'],
          ipFamilyPolicy: 'RequireDualStack',
          internalTrafficPolicy: 'Local',
          ports: [{ name: 'tcp', protocol: 'TCP', port: 80 }],
        },
      },
    });
    for (const [fam, ip] of [
      ['IPv4', '198.18.2.10'],
      ['IPv6', 'fd00:18:2::a'],
    ] as const) {
      await inputs.jsPublish(
        EndpointSliceEvent,
        k8sObjectSubject('EndpointSlice', 'lab', `echo-${fam}`),
        {
          op: 'upsert',
          object: {
            metadata: meta(`echo-${fam}`),
            addressType: fam,
            serviceName: 'echo',
            endpoints: [{ addresses: [ip], conditions: { ready: true }, nodeName: 'b' }],
            ports: [{ name: 'tcp', port: 7000, protocol: 'TCP' }],
          },
        },
      );
    }
    await eventually(async () => {
      const b = (await nodeState(inputs, 'b')).services.get('lab/echo');
      expect(
        b?.frontends.map(
          (f) =>
            `${f.address}:${f.port} -> ${f.backends.map((x) => `${x.address}:${x.port}`).join()}`,
        ),
      ).toEqual(['198.18.96.10:80 -> 198.18.2.10:7000', 'fd00:96::a:80 -> fd00:18:2::a:7000']);
      const a = (await nodeState(inputs, 'a')).services.get('lab/echo');
      expect(a?.frontends.map((f) => f.backends.length)).toEqual([0, 0]);
    });
    await inputs.jsPublish(ServiceEvent, k8sObjectSubject('Service', 'lab', 'echo'), {
      op: 'delete',
      object: { metadata: meta('echo'), spec: {} },
    });
    await eventually(async () => {
      for (const node of ['a', 'b', 'c.lab'])
        expect((await nodeState(inputs, node)).services.has('lab/echo')).toBe(false);
    });
  });

  it('an agent that missed messages resumes from its last stream sequence and gets only what changed', async () => {
    const before = await snapshotAll(inputs);
    const lastSeqOfA = Math.max(
      ...[...before].filter(([s]) => s.includes('.node.a.')).map(([, d]) => d.streamSeq),
    );
    const syncBefore = (await nodeState(inputs, 'a')).sync?.revision ?? 0;
    const cache = endpoint('a', 'cache', '198.18.1.10', 'fd00:18:1::a');
    await publishEndpoint(inputs, cache);

    const seen: Array<PayloadOf<(typeof OUTPUT)[number]>> = [];
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    const consumer = await inputs.consume(
      OUTPUT,
      { stream: ROUTER_STREAM, filterSubjects: [routerNodeFilter('a')], startSeq: lastSeqOfA + 1 },
      (d) => {
        seen.push(d.value);
        if ('ipcacheEntries' in d.value && d.value.revision > syncBefore) done();
      },
    );
    await finished;
    await consumer.stop();
    expect(seen.map((m) => ('entry' in m ? `${m.op} ${m.entry.prefix}` : m.op))).toEqual([
      expect.stringMatching(/^upsert (198\.18\.1\.10\/32|fd00:18:1::a\/128)$/),
      expect.stringMatching(/^upsert (198\.18\.1\.10\/32|fd00:18:1::a\/128)$/),
      'upsert',
    ]);
    expect(seen.at(-1)).toMatchObject({ ipcacheEntries: 18, routes: 4 });
    await publishEndpoint(inputs, cache, 'delete');
    await eventually(async () => expect((await nodeState(inputs, 'a')).ipcache.size).toBe(16));
  });

  it('a restarted router publishes nothing when in sync, and only the difference otherwise', async () => {
    await router.stop();
    const revisionBefore = router.revision;
    const before = await snapshotAll(inputs);
    const maxSeq = Math.max(...[...before.values()].map((d) => d.streamSeq));

    const metrics = createRouterMetrics(createMetrics());
    router = startRouter(routerBus, metrics);
    await router.start();
    // start() applies each stored input once and its consumers replay each once more. Once they
    // have, and the router is idle, it has published all it ever would for them.
    const stored = await storedInputs(inputs);
    expect(stored).toBeGreaterThan(0);
    await eventually(async () => expect(await inputsApplied(metrics)).toBe(2 * stored));
    await router.idle();
    const same = await snapshotAll(inputs);
    expect(Math.max(...[...same.values()].map((d) => d.streamSeq))).toBe(maxSeq);

    // While the router is away, a pod goes; when it is back, only that is published.
    await router.stop();
    await publishEndpoint(inputs, db, 'delete');
    router = startRouter(routerBus);
    await router.start();
    const after = await eventually(async () => {
      const s = await snapshotAll(inputs);
      expect([...s.values()].filter((d) => d.streamSeq > maxSeq)).toHaveLength(9);
      return s;
    });
    const changed = [...after].filter(([, d]) => d.streamSeq > maxSeq).map(([, d]) => d.value);
    // Per node: the pod's two addresses as tombstones, then a sync.
    expect(
      changed
        .filter((m) => m.op === 'delete')
        .map((m) => ('prefix' in m ? m.prefix : ''))
        .sort(),
    ).toEqual([
      '198.18.3.10/32',
      '198.18.3.10/32',
      '198.18.3.10/32',
      'fd00:18:3::a/128',
      'fd00:18:3::a/128',
      'fd00:18:3::a/128',
    ]);
    expect(changed.filter((m) => 'ipcacheEntries' in m)).toHaveLength(3);
    for (const m of changed) expect(m.revision).toBeGreaterThan(revisionBefore);
  });

  it('converges after the NATS server restarts', async () => {
    await nats.restart();
    const late = endpoint('b', 'late', '198.18.2.20', 'fd00:18:2::14');
    await eventually(() => publishEndpoint(inputs, late));
    await eventually(async () => {
      const s = await nodeState(inputs, 'a');
      expect(s.ipcache.get('fd00:18:2::14/128')).toMatchObject({ hostNode: 'b' });
      expect(s.sync?.ipcacheEntries).toBe(s.ipcache.size);
    });
    await publishEndpoint(inputs, late, 'delete');
    await eventually(async () => expect((await nodeState(inputs, 'a')).ipcache.size).toBe(14));
  });

  it("a node that goes away disappears from every other node's state, and its own state is deleted", async () => {
    await publishNode(inputs, 'c.lab', 'delete');
    const a = await eventually(async () => {
      const s = await nodeState(inputs, 'a');
      expect(s.ipcache.size).toBe(10);
      return s;
    });
    for (const prefix of a.ipcache.keys())
      expect(a.ipcache.get(prefix)?.hostNode).not.toBe('c.lab');
    expect([...a.routes.keys()].sort()).toEqual(['198.18.2.0/24', 'fd00:18:2::/112']);
    const gone = await eventually(async () => {
      const s = await nodeState(inputs, 'c.lab');
      expect(s.sync?.op).toBe('delete');
      return s;
    });
    expect(gone.ipcache.size + gone.routes.size).toBe(0);
    expect(gone.sync).toMatchObject({ ipcacheEntries: 0, routes: 0 });
  });
});
