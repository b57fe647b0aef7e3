import { mkdirSync, rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Bus } from '@dyad/bus';
import { k8sObjectSubject } from '@dyad/contracts';
import type { KubeCluster, NatsServer } from '@dyad/testbed';
import { startKube } from '@dyad/testbed';
import type { InMemoryTracing } from '@dyad/telemetry';
import { startInMemoryTracing } from '@dyad/telemetry';
import { ALL_CONTRACTS, K8S_STREAM } from '@dyad/contracts';
import type { KubeBridge } from '../src/bridge.ts';
import type { StreamValue } from './harness.ts';
import {
  connectTestBus,
  eventually,
  kubeClients,
  makeBridge,
  retrying,
  startServers,
  streamState,
} from './harness.ts';

// kube-bridge against a real kube-apiserver and a real nats-server: what is created, changed and
// deleted in Kubernetes must end up, validated, in DYAD_K8S, also across watch restarts and a
// NATS restart.
let nats: NatsServer;
let kube: KubeCluster;
let bus: Bus;
let bridge: KubeBridge;
let k: ReturnType<typeof kubeClients>;
let tracing: InMemoryTracing;

/** What beforeAll made, undone last first; a set-up that failed half way undoes its half. */
const teardown: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  tracing = startInMemoryTracing();
  teardown.push(() => tracing.shutdown());
  [nats, kube] = await startServers(teardown, startKube());
  bus = await connectTestBus(nats.url, 'kube-bridge-test-reader');
  teardown.push(() => bus.close());
  k = kubeClients(kube.kubeconfigPath);
  bridge = makeBridge(kube.kubeconfigPath, bus);
  bridge.start();
  teardown.push(() => bridge.stop());
  await bridge.settled();
});

afterAll(async () => {
  for (const undo of teardown.reverse()) await undo();
});

async function valueOf(subject: string): Promise<StreamValue> {
  const v = (await streamState(bus)).get(subject);
  if (v === undefined) throw new Error(`${subject} not in the stream`);
  return v;
}

async function relabelNamespace(name: string, labels: Record<string, string>): Promise<void> {
  const ns = await k.core.readNamespace({ name });
  ns.metadata = { ...ns.metadata, labels: { ...ns.metadata?.labels, ...labels } };
  await k.core.replaceNamespace({ name, body: ns });
}

const meta = (name: string, labels: Record<string, string> = {}) => ({ name, labels });

describe('each kind reaches the stream', () => {
  it('a namespace: created, relabelled, deleted → upsert, upsert, tombstone', async () => {
    const subject = k8sObjectSubject('Namespace', undefined, 'bridge-ns-a');
    await k.core.createNamespace({ body: { metadata: meta('bridge-ns-a', { team: 'blue' }) } });
    const created = await eventually(async () => {
      const v = await valueOf(subject);
      expect(v.op).toBe('upsert');
      return v;
    });
    expect(created.type).toBe('io.dyad.k8s.namespace.v1');
    expect(created.object.metadata.labels.team).toBe('blue');

    await relabelNamespace('bridge-ns-a', { team: 'red' });
    await eventually(async () =>
      expect((await valueOf(subject)).object.metadata.labels.team).toBe('red'),
    );

    await k.core.deleteNamespace({ name: 'bridge-ns-a' });
    // Namespace deletion is finalized by the controller-manager's namespace controller.
    await eventually(async () => expect((await valueOf(subject)).op).toBe('delete'), 60_000);
  });

  it('a node with a dotted name is one subject, cluster-scoped', async () => {
    await k.core.createNode({
      body: {
        metadata: meta('node-1.lab', { 'kubernetes.io/os': 'linux' }),
        spec: { podCIDRs: ['198.18.4.0/24', 'fd00:d1ad:4::/120'] },
      },
    });
    const v = await eventually(() => valueOf(k8sObjectSubject('Node', undefined, 'node-1.lab')));
    expect(v.object.spec).toMatchObject({ podCIDRs: ['198.18.4.0/24', 'fd00:d1ad:4::/120'] });
  });

  it('a pod with two podIPs keeps both, in order, primary first', async () => {
    await k.core.createNamespace({ body: { metadata: meta('bridge-pods') } });
    await retrying(() =>
      k.core.createNamespacedPod({
        namespace: 'bridge-pods',
        body: {
          metadata: meta('web-0', { app: 'web' }),
          spec: {
            nodeName: 'node-1.lab',
            containers: [
              { name: 'web', image: 'none', ports: [{ name: 'http', containerPort: 8080 }] },
            ],
          },
        },
      }),
    );
    const pod = await k.core.readNamespacedPod({ name: 'web-0', namespace: 'bridge-pods' });
    pod.status = {
      phase: 'Running',
      podIP: 'fd00:d1ad:4::5',
      podIPs: [{ ip: 'fd00:d1ad:4::5' }, { ip: '198.18.4.5' }],
    };
    await k.core.replaceNamespacedPodStatus({ name: 'web-0', namespace: 'bridge-pods', body: pod });

    const subject = k8sObjectSubject('Pod', 'bridge-pods', 'web-0');
    const v = await eventually(async () => {
      const got = await valueOf(subject);
      expect(got.object.status).toMatchObject({ podIPs: ['fd00:d1ad:4::5', '198.18.4.5'] });
      return got;
    });
    expect(v.object.spec).toMatchObject({
      nodeName: 'node-1.lab',
      containers: [
        { name: 'web', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] },
      ],
    });

    await k.core.deleteNamespacedPod({
      name: 'web-0',
      namespace: 'bridge-pods',
      gracePeriodSeconds: 0,
    });
    await eventually(async () => expect((await valueOf(subject)).op).toBe('delete'));
  });

  it('a dual-stack Service keeps ipFamilies, ipFamilyPolicy and both clusterIPs', async () => {
    await retrying(() =>
      k.core.createNamespacedService({
        namespace: 'bridge-pods',
        body: {
          metadata: meta('web'),
          spec: {
            ipFamilyPolicy: 'RequireDualStack',
            ipFamilies: ['IPv6', 'IPv4'],
            selector: { app: 'web' },
            ports: [{ name: 'http', port: 80, targetPort: 'http' }],
          },
        },
      }),
    );
    const v = await eventually(() => valueOf(k8sObjectSubject('Service', 'bridge-pods', 'web')));
    const spec = v.object.spec as {
      ipFamilies: string[];
      ipFamilyPolicy: string;
      clusterIPs: string[];
    };
    expect(spec.ipFamilies).toEqual(['IPv6', 'IPv4']);
    expect(spec.ipFamilyPolicy).toBe('RequireDualStack');
    expect(spec.clusterIPs).toHaveLength(2);
    expect(spec.clusterIPs[0]).toContain(':');
    expect(spec.clusterIPs[1]).toMatch(/^198\.18\./);
  });

  it('an EndpointSlice and a NetworkPolicy arrive with their fields', async () => {
    await k.discovery.createNamespacedEndpointSlice({
      namespace: 'bridge-pods',
      body: {
        metadata: { name: 'web-manual', labels: { 'kubernetes.io/service-name': 'web' } },
        addressType: 'IPv6',
        endpoints: [
          { addresses: ['fd00:d1ad:4::5'], conditions: { ready: true }, nodeName: 'node-1.lab' },
        ],
        ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      },
    });
    await k.networking.createNamespacedNetworkPolicy({
      namespace: 'bridge-pods',
      body: {
        metadata: meta('allow-web'),
        spec: {
          podSelector: { matchLabels: { app: 'web' } },
          policyTypes: ['Ingress'],
          ingress: [{ _from: [{ ipBlock: { cidr: 'fd00:beef::/64' } }], ports: [{ port: 8080 }] }],
        },
      },
    });
    const slice = await eventually(() =>
      valueOf(k8sObjectSubject('EndpointSlice', 'bridge-pods', 'web-manual')),
    );
    expect(slice.object).toMatchObject({ addressType: 'IPv6', serviceName: 'web' });
    const np = await eventually(() =>
      valueOf(k8sObjectSubject('NetworkPolicy', 'bridge-pods', 'allow-web')),
    );
    expect(np.object.spec).toMatchObject({
      ingress: [
        {
          from: [{ ipBlock: { cidr: 'fd00:beef::/64', except: [] } }],
          ports: [{ port: 8080, protocol: 'TCP' }],
        },
      ],
    });
  });
});

describe('tracing', () => {
  it('each published object carries the traceparent of the span that observed its change', async () => {
    await k.core.createNamespace({ body: { metadata: meta('bridge-traced') } });
    const subject = k8sObjectSubject('Namespace', undefined, 'bridge-traced');
    const d = await eventually(async () => {
      const got = (
        await bus.snapshot(ALL_CONTRACTS, { stream: K8S_STREAM, filterSubjects: [subject] })
      ).get(subject);
      if (got === undefined) throw new Error('not yet');
      return got;
    });
    const traceparent = d.header('traceparent');
    expect(traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
    const traceId = traceparent?.split('-')[1];
    const observed = tracing
      .spans()
      .find(
        (s) => s.name === 'k8s upsert Namespace' && s.attributes['k8s.name'] === 'bridge-traced',
      );
    expect(observed?.spanContext().traceId).toBe(traceId);
  });
});

describe('convergence', () => {
  it('a bridge that was down catches up: new objects published, deleted ones tombstoned', async () => {
    await k.core.createNamespace({ body: { metadata: meta('bridge-gone') } });
    await k.core.createNamespace({ body: { metadata: meta('bridge-stays', { v: '1' }) } });
    await eventually(() => valueOf(k8sObjectSubject('Namespace', undefined, 'bridge-gone')));
    await bridge.stop();

    // While nobody watches: one namespace goes, one changes, one is born.
    await k.core.deleteNamespace({ name: 'bridge-gone' });
    await relabelNamespace('bridge-stays', { v: '2' });
    await k.core.createNamespace({ body: { metadata: meta('bridge-born') } });
    await eventually(async () => {
      const list = await k.core.listNamespace();
      expect(list.items.map((n) => n.metadata?.name)).not.toContain('bridge-gone');
    }, 60_000);

    bridge = makeBridge(kube.kubeconfigPath, bus);
    bridge.start();
    await bridge.settled();
    const s = await streamState(bus);
    expect(s.get(k8sObjectSubject('Namespace', undefined, 'bridge-gone'))?.op).toBe('delete');
    expect(
      s.get(k8sObjectSubject('Namespace', undefined, 'bridge-stays'))?.object.metadata.labels.v,
    ).toBe('2');
    expect(s.get(k8sObjectSubject('Namespace', undefined, 'bridge-born'))?.op).toBe('upsert');
  });

  it('a forced relist converges to exactly what the API server lists', async () => {
    bridge.relistAll();
    await bridge.settled();
    await expectStreamMatchesApi();
  });

  it('an API server restart: the watch comes back and later changes still arrive', async () => {
    await kube.restartApiserver();
    await k.core.createNamespace({ body: { metadata: meta('bridge-after-restart') } });
    await eventually(
      () => valueOf(k8sObjectSubject('Namespace', undefined, 'bridge-after-restart')),
      60_000,
    );
  });

  it('NATS restarted in the middle loses nothing in the final state', async () => {
    await nats.kill();
    // Changes made while NATS is down wait in kube-bridge's queue.
    await k.core.createNamespace({ body: { metadata: meta('bridge-during-outage') } });
    await relabelNamespace('bridge-stays', { v: '3' });
    await k.core.deleteNamespacedService({ name: 'web', namespace: 'bridge-pods' });
    // The bridge has seen the three changes and holds them (a backlog only NATS can drain).
    await eventually(() => expect(bridge.backlog).toBeGreaterThanOrEqual(3));
    await nats.restart();
    await eventually(async () => {
      const s = await streamState(bus);
      expect(s.get(k8sObjectSubject('Namespace', undefined, 'bridge-during-outage'))?.op).toBe(
        'upsert',
      );
      expect(
        s.get(k8sObjectSubject('Namespace', undefined, 'bridge-stays'))?.object.metadata.labels.v,
      ).toBe('3');
      expect(s.get(k8sObjectSubject('Service', 'bridge-pods', 'web'))?.op).toBe('delete');
    }, 60_000);
    await bridge.settled();
    await expectStreamMatchesApi();
  });

  it('NATS back on an empty data directory gets every object again at once, not at the next resync', async () => {
    await nats.kill();
    rmSync(nats.storeDir, { recursive: true, force: true });
    mkdirSync(nats.storeDir);
    await nats.restart();
    // the resync is an hour away: only the reconnect can bring the objects back
    await expectStreamMatchesApi();
  });
});

/** Every live object in the API server is in the stream, and nothing else is live there. */
async function expectStreamMatchesApi(): Promise<void> {
  // Controllers keep changing objects, so both sides are read again on every try.
  await eventually(async () => {
    const api = new Set<string>();
    type Item = { metadata?: { name?: string; namespace?: string } };
    const add = (kind: string, namespaced: boolean, items: Item[]) => {
      for (const i of items)
        api.add(
          k8sObjectSubject(
            kind,
            namespaced ? i.metadata?.namespace : undefined,
            i.metadata?.name ?? '',
          ),
        );
    };
    add('Namespace', false, (await k.core.listNamespace()).items);
    add('Node', false, (await k.core.listNode()).items);
    add('Pod', true, (await k.core.listPodForAllNamespaces()).items);
    add('Service', true, (await k.core.listServiceForAllNamespaces()).items);
    add('EndpointSlice', true, (await k.discovery.listEndpointSliceForAllNamespaces()).items);
    add('NetworkPolicy', true, (await k.networking.listNetworkPolicyForAllNamespaces()).items);
    const live = [...(await streamState(bus))].filter(([, v]) => v.op === 'upsert').map(([s]) => s);
    expect(live.sort()).toEqual([...api].sort());
  });
}
