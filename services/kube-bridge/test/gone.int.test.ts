import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Bus } from '@dyad/bus';
import { k8sKindFilter, k8sObjectSubject, subjectMatches } from '@dyad/contracts';
import { createMetrics } from '@dyad/telemetry';
import type { KubeCluster, NatsServer } from '@dyad/testbed';
import { startKube } from '@dyad/testbed';
import type { KubeBridge } from '../src/bridge.ts';
import { createBridgeMetrics } from '../src/metrics.ts';
import {
  connectTestBus,
  eventually,
  kubeClients,
  makeBridge,
  startServers,
  streamState,
} from './harness.ts';

// A real 410 Gone. The apiserver runs without its watch cache, so watches read etcd directly,
// and closes every watch after 1-2 s (--min-request-timeout=1), so the informer keeps
// re-watching from the last resourceVersion it saw. Writes to another kind move etcd's revision
// past that point and a compaction drops the history: the next re-watch gets 410, and the
// informer must relist. A node deleted in that window may be seen only through the relist.
let nats: NatsServer;
let kube: KubeCluster;
let bus: Bus;
let bridge: KubeBridge;

const metrics = createBridgeMetrics(createMetrics());
const count = async (c: typeof metrics.lists, kind: string) =>
  (await c.get()).values.find((v) => v.labels.kind === kind)?.value ?? 0;
const lists = (kind: string) => count(metrics.lists, kind);
const expiries = (kind: string) => count(metrics.watchExpiries, kind);

/** What beforeAll made, undone last first; a set-up that failed half way undoes its half. */
const teardown: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  [nats, kube] = await startServers(
    teardown,
    startKube({
      extraArgs: { 'kube-apiserver': ['--watch-cache=false', '--min-request-timeout=1'] },
    }),
  );
  bus = await connectTestBus(nats.url, 'kube-bridge-gone-test');
  teardown.push(() => bus.close());
  bridge = makeBridge(kube.kubeconfigPath, bus, 3_600_000, metrics);
  bridge.start();
  teardown.push(() => bridge.stop());
  await bridge.settled();
});

afterAll(async () => {
  for (const undo of teardown.reverse()) await undo();
});

async function etcd(path: string, body: unknown): Promise<{ header: { revision: string } }> {
  const r = await fetch(`${kube.etcdUrl}${path}`, { method: 'POST', body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`etcd ${path}: ${r.status} ${await r.text()}`);
  return (await r.json()) as { header: { revision: string } };
}

it('after a compaction makes the watch position too old, the bridge relists and the stream converges', async () => {
  const k = kubeClients(kube.kubeconfigPath);
  const doomed = k8sObjectSubject('Node', undefined, 'gone-doomed');
  await k.core.createNode({ body: { metadata: { name: 'gone-doomed' } } });
  await eventually(async () => expect((await streamState(bus)).get(doomed)?.op).toBe('upsert'));
  const before = await lists('Node');
  const expiredBefore = await expiries('Node');

  // Delete, churn another kind so the revision moves on, and compact: the node informer's next
  // re-watch starts from a compacted revision. (The delete may still arrive by watch if a
  // re-watch slips in first; the relist and the converged stream are what this checks.)
  await k.core.deleteNode({ name: 'gone-doomed' });
  for (let i = 0; i < 20; i++) {
    await k.core.createNamespacedConfigMap({
      namespace: 'default',
      body: { metadata: { name: `churn-${i}` }, data: { i: String(i) } },
    });
  }
  const { header } = await etcd('/v3/kv/range', { key: Buffer.from('/').toString('base64') });
  await etcd('/v3/kv/compaction', { revision: header.revision, physical: true });

  // The informer only relists after a 410 (or an error); count lists to know it happened, and
  // the bridge's expiry counter to know it was the 410.
  await eventually(async () => expect(await lists('Node')).toBeGreaterThan(before), 60_000);
  expect(await expiries('Node')).toBeGreaterThan(expiredBefore);
  await bridge.settled();
  const s = await streamState(bus);
  expect(s.get(doomed)?.op).toBe('delete');
  const live = (await k.core.listNode()).items.map((n) =>
    k8sObjectSubject('Node', undefined, n.metadata?.name ?? ''),
  );
  const streamLive = [...s].filter(
    ([subj, v]) => subjectMatches(k8sKindFilter('Node'), subj) && v.op === 'upsert',
  );
  expect(streamLive.map(([subj]) => subj).sort()).toEqual(live.sort());
});
