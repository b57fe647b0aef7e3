// The policy service against a real nats-server, fed as kube-bridge feeds it: Namespaces, Pods
// and NetworkPolicies on DYAD_K8S. Checks the identities, the per-node messages (each pod's on
// its own node's subject only), what a label change does, the status of a policy, a malformed message (dead-lettered, the last good state kept), a restart
// (same identities, nothing republished) and the freeing of unused identities.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  ALL_STREAMS,
  CE_SPECVERSION,
  CONTENT_TYPE_JSON,
  Header,
  NamespaceEvent,
  NetworkPolicy,
  NetworkPolicyEvent,
  Pod,
  PodEvent,
  PodPolicyDesiredV2,
  PolicyIdentityBucket,
  PolicyIdentityKey,
  deadLetterSubject,
  k8sObjectSubject,
  nodePolicyFilter,
  nodePolicySubject,
  policyIdentitySubject,
  policyPodSubject,
  policyStatusSubject,
  subjectMatches,
} from '@dyad/contracts';
import type { PayloadOf } from '@dyad/contracts';
import type { Bus } from '@dyad/bus';
import { connectBus } from '@dyad/bus';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { jetstream } from '@nats-io/jetstream';
import { connect, headers as natsHeaders } from '@nats-io/transport-node';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import type { z } from 'zod';
import { directionAllows } from '../src/evaluate.ts';
import { createPolicyMetrics } from '../src/metrics.ts';
import { PolicyService, readStored } from '../src/service.ts';

const WAIT = { timeout: 30_000, interval: 50 };

async function connectAs(url: string, name: string): Promise<Bus> {
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

function startPolicy(bus: Bus): PolicyService {
  return new PolicyService({
    bus,
    logger: createLogger({
      service: 'policy-test',
      level: process.env.DYAD_TEST_LOG === '1' ? 'debug' : 'silent',
    }),
    metrics: createPolicyMetrics(createMetrics()),
    tombstoneTtl: '1h',
    flushDelayMs: 5,
    resyncIntervalMs: 3_600_000,
    // Freed after two gc passes unused: quick enough to watch in a test.
    identityGraceMs: 0,
    identityGcIntervalMs: 100,
    allowHost: true,
  });
}

const meta = (name: string, namespace: string | undefined, labels: Record<string, string>) => ({
  uid: `uid-${namespace ?? '_'}-${name}`,
  name,
  ...(namespace === undefined ? {} : { namespace }),
  resourceVersion: '1',
  labels,
});

async function publishNamespace(bus: Bus, name: string, labels: Record<string, string>) {
  await bus.jsPublish(NamespaceEvent, k8sObjectSubject('Namespace', undefined, name), {
    op: 'upsert',
    object: {
      metadata: meta(name, undefined, { ...labels, 'kubernetes.io/metadata.name': name }),
      status: { phase: 'Active' },
    },
  });
}

interface PodSpec {
  readonly labels: Record<string, string>;
  readonly node: string;
  readonly ips: readonly string[];
  readonly hostNetwork?: boolean;
}

function podObject(ns: string, name: string, p: PodSpec): z.output<typeof Pod> {
  return Pod.parse({
    metadata: meta(name, ns, p.labels),
    spec: {
      nodeName: p.node,
      hostNetwork: p.hostNetwork ?? false,
      containers: [
        {
          name: 'serve',
          ports: [
            { name: 'serve-80-tcp', containerPort: 80, protocol: 'TCP' },
            { name: 'serve-81-tcp', containerPort: 81, protocol: 'TCP' },
          ],
        },
      ],
    },
    status: { phase: 'Running', hostIPs: [], podIPs: [...p.ips] },
  });
}

async function publishPod(
  bus: Bus,
  ns: string,
  name: string,
  p: PodSpec,
  op: 'upsert' | 'delete' = 'upsert',
) {
  await bus.jsPublish(PodEvent, k8sObjectSubject('Pod', ns, name), {
    op,
    object: podObject(ns, name, p),
  });
}

async function publishPolicy(
  bus: Bus,
  ns: string,
  name: string,
  spec: z.input<typeof NetworkPolicy>['spec'],
  op: 'upsert' | 'delete' = 'upsert',
) {
  const object = NetworkPolicy.parse({ metadata: meta(name, ns, {}), spec });
  await bus.jsPublish(NetworkPolicyEvent, k8sObjectSubject('NetworkPolicy', ns, name), {
    op,
    object,
  });
}

type V2 = PayloadOf<typeof PodPolicyDesiredV2>;
type Upsert = Extract<V2, { op: 'upsert' }>;

async function nodePolicy(
  bus: Bus,
  node: string,
  ns: string,
  name: string,
): Promise<Upsert | undefined> {
  const stored = await readStored(bus);
  const v = stored.nodePolicies.get(nodePolicySubject(node, ns, name))?.value;
  return v !== undefined && v.op === 'upsert' && 'ingress' in v ? v : undefined;
}

async function podIdentity(bus: Bus, ns: string, name: string): Promise<number | undefined> {
  const v = (await readStored(bus)).pods.get(policyPodSubject(ns, name))?.value;
  return v?.op === 'upsert' ? v.identity : undefined;
}

/** The highest stream sequence of each output (DYAD_POLICY's parts, DYAD_NODE's node policies). */
async function maxSeqs(bus: Bus): Promise<number[]> {
  const s = await readStored(bus);
  return [s.identities, s.pods, s.statuses, s.nodePolicies].map((m) =>
    Math.max(0, ...[...m.values()].map((d) => d.streamSeq)),
  );
}

const POD = {
  xa: { labels: { pod: 'a' }, node: 'n1', ips: ['198.18.1.10', 'fd00:18:1::10'] },
  xb: { labels: { pod: 'b' }, node: 'n2', ips: ['198.18.1.11', 'fd00:18:1::11'] },
  ya: { labels: { pod: 'a' }, node: 'n2', ips: ['198.18.2.10', 'fd00:18:2::10'] },
  yb: { labels: { pod: 'b' }, node: 'n1', ips: ['198.18.2.11', 'fd00:18:2::11'] },
} as const;

describe('policy service over NATS', () => {
  let nats: NatsServer;
  let inputs: Bus;
  let policyBus: Bus;
  let policy: PolicyService;
  let raw: NatsConnection;
  const dlq: Msg[] = [];

  /** What beforeAll made, undone last first; a set-up that failed half way undoes its half. */
  const teardown: Array<() => Promise<unknown>> = [];

  beforeAll(async () => {
    nats = await startNats();
    teardown.push(() => nats.stop());
    inputs = await connectAs(nats.url, 'kube-bridge');
    teardown.push(() => inputs.close());
    raw = await connect({ servers: nats.url });
    teardown.push(() => raw.close());
    const sub = raw.subscribe(deadLetterSubject('policy'));
    void (async () => {
      for await (const m of sub) dlq.push(m);
    })();
    await raw.flush();
    await publishNamespace(inputs, 'x', { ns: 'x' });
    await publishNamespace(inputs, 'y', { ns: 'y' });
    await publishPod(inputs, 'x', 'a', POD.xa);
    await publishPod(inputs, 'x', 'b', POD.xb);
    await publishPod(inputs, 'y', 'a', POD.ya);
    await publishPod(inputs, 'y', 'b', POD.yb);
    // x/a: ingress only from namespace y on its port named serve-80-tcp.
    await publishPolicy(inputs, 'x', 'allow-y', {
      podSelector: { matchLabels: { pod: 'a' } },
      ingress: [
        {
          from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }],
          ports: [{ port: 'serve-80-tcp' }],
        },
      ],
    });
    policyBus = await connectAs(nats.url, 'policy');
    teardown.push(() => policyBus.close());
    policy = startPolicy(policyBus);
    teardown.push(() => policy.stop());
    await policy.start();
  });

  afterAll(async () => {
    for (const undo of teardown.reverse()) await undo();
  });

  it('gives every pod an identity from its labels and its namespace, and publishes them', async () => {
    const stored = await vi.waitFor(async () => {
      const s = await readStored(inputs);
      expect(s.pods.size).toBe(4);
      expect(s.identities.size).toBe(4);
      expect([...s.identities.values()].every((d) => d.value.op === 'upsert')).toBe(true);
      return s;
    }, WAIT);
    const ids = [...stored.pods.values()].map((d) =>
      d.value.op === 'upsert' ? d.value.identity : 0,
    );
    // Same pod labels in two namespaces: two identities.
    expect(new Set(ids).size).toBe(4);
    const xa = await podIdentity(inputs, 'x', 'a');
    const labels = [...stored.identities.values()].find((d) => d.value.identity === xa)?.value
      .labels;
    expect(labels).toEqual([
      'dyad:namespace=x',
      'k8s-ns:kubernetes.io/metadata.name=x',
      'k8s-ns:ns=x',
      'k8s:pod=a',
    ]);
    expect(stored.pods.get(policyPodSubject('x', 'a'))?.value).toMatchObject({
      node: 'n1',
      uid: 'uid-x-a',
    });
  });

  it("publishes each pod's compiled policy on its own node's subject only", async () => {
    const xa = await vi.waitFor(async () => {
      const p = await nodePolicy(inputs, 'n1', 'x', 'a');
      expect(p?.ingress.enforce).toBe(true);
      return p as Upsert;
    }, WAIT);
    const ya = (await podIdentity(inputs, 'y', 'a')) as number;
    const xb = (await podIdentity(inputs, 'x', 'b')) as number;
    expect(xa.policies).toEqual(['allow-y']);
    expect(directionAllows(xa.ingress, { identity: ya, address: '198.18.2.10' }, 'TCP', 80)).toBe(
      true,
    );
    expect(directionAllows(xa.ingress, { identity: ya, address: 'fd00:18:2::10' }, 'TCP', 81)).toBe(
      false,
    );
    expect(directionAllows(xa.ingress, { identity: xb, address: '198.18.1.11' }, 'TCP', 80)).toBe(
      false,
    );
    expect(xa.egress.enforce).toBe(false);
    // x/a lives on n1: n2 has no message for it, and has its own pods' (open) ones.
    const n2 = await readStored(inputs).then((s) =>
      [...s.nodePolicies.keys()].filter((k) => subjectMatches(nodePolicyFilter('n2'), k)),
    );
    expect(n2.sort()).toEqual(
      [nodePolicySubject('n2', 'x', 'b'), nodePolicySubject('n2', 'y', 'a')].sort(),
    );
    expect(await nodePolicy(inputs, 'n2', 'y', 'a')).toMatchObject({
      policies: [],
      ingress: { enforce: false },
      egress: { enforce: false },
    });
  });

  it('a label change gives the pod a new identity and updates the policies that name it', async () => {
    const before = (await podIdentity(inputs, 'y', 'a')) as number;
    await publishPod(inputs, 'y', 'a', { ...POD.ya, labels: { pod: 'a', tier: 'front' } });
    const after = await vi.waitFor(async () => {
      const id = await podIdentity(inputs, 'y', 'a');
      expect(id).not.toBe(before);
      return id as number;
    }, WAIT);
    await vi.waitFor(async () => {
      const xa = await nodePolicy(inputs, 'n1', 'x', 'a');
      const peers = xa?.ingress.peers.flatMap((g) => g.identities) ?? [];
      expect(peers).toContain(after);
      expect(peers).not.toContain(before);
    }, WAIT);
    // The old identity has no pod any more: freed after its grace period, a tombstone on the stream.
    await vi.waitFor(async () => {
      const s = await readStored(inputs);
      const live = [...s.identities.values()].filter((d) => d.value.op === 'upsert');
      expect(live.map((d) => d.value.identity)).not.toContain(before);
      expect(s.identities.get(policyIdentitySubject(before))?.value.op).toBe('delete');
      const kv = await inputs.kv(PolicyIdentityBucket.bucket);
      expect((await kv.get(PolicyIdentityKey.id(before)))?.operation ?? 'PURGE').not.toBe('PUT');
    }, WAIT);
  });

  it('compiles SCTP ports as written, with nothing to report (the datapath reads them)', async () => {
    await publishPolicy(inputs, 'y', 'sctp', {
      podSelector: { matchLabels: { pod: 'b' } },
      ingress: [{ ports: [{ protocol: 'SCTP', port: 9000 }] }],
    });
    const status = await vi.waitFor(async () => {
      const s = (await readStored(inputs)).statuses;
      const v = [...s.values()].find((d) => d.value.name === 'sctp')?.value;
      expect(v?.op).toBe('upsert');
      return v;
    }, WAIT);
    expect(status).toMatchObject({ namespace: 'y', problems: [] });
    // y/b admits SCTP 9000 only (and its node).
    const yb = await vi.waitFor(async () => {
      const p = await nodePolicy(inputs, 'n1', 'y', 'b');
      expect(p?.ingress.enforce).toBe(true);
      return p as Upsert;
    }, WAIT);
    expect(yb.ingress.peers.find((g) => g.identities.includes(0))?.allow).toEqual([
      { protocol: 'SCTP', ports: { from: 9000, to: 9000 } },
    ]);
  });

  it('dead-letters a malformed NetworkPolicy and keeps enforcing the last good one', async () => {
    const before = await nodePolicy(inputs, 'n1', 'x', 'a');
    const h = natsHeaders();
    h.set(Header.specversion, CE_SPECVERSION);
    h.set(Header.id, 'malformed-1');
    h.set(Header.source, '/dyad/kube-bridge');
    h.set(Header.type, NetworkPolicyEvent.type);
    h.set(Header.time, new Date().toISOString());
    h.set(Header.contentType, CONTENT_TYPE_JSON);
    const body = {
      op: 'upsert',
      object: { metadata: { name: 'allow-y' }, spec: { podSelector: 7 } },
    };
    await jetstream(raw).publish(
      k8sObjectSubject('NetworkPolicy', 'x', 'allow-y'),
      new TextEncoder().encode(JSON.stringify(body)),
      { headers: h },
    );
    await vi.waitFor(
      () => expect(dlq.map((m) => m.headers?.get('dyad-dlq-reason'))).toContain('schema'),
      WAIT,
    );
    // A later change elsewhere is compiled with the old allow-y still in force.
    await publishPod(inputs, 'y', 'c', { labels: { pod: 'c' }, node: 'n2', ips: ['198.18.2.12'] });
    await vi.waitFor(async () => expect(await podIdentity(inputs, 'y', 'c')).toBeDefined(), WAIT);
    await policy.idle();
    const after = await vi.waitFor(async () => {
      const p = await nodePolicy(inputs, 'n1', 'x', 'a');
      expect(p?.ingress.peers.flatMap((g) => g.identities)).toContain(
        await podIdentity(inputs, 'y', 'c'),
      );
      return p;
    }, WAIT);
    expect(after?.policies).toEqual(before?.policies);
    expect(after?.ingress.enforce).toBe(true);
    // Not silently: the policy's status says its newest version was refused.
    await vi.waitFor(async () => {
      const st = (await readStored(inputs)).statuses.get(
        policyStatusSubject('x', 'allow-y'),
      )?.value;
      expect(st?.op === 'upsert' ? st.problems.map((p) => p.code) : []).toEqual(['update-refused']);
    }, WAIT);
  });

  it('a restart keeps every identity and publishes nothing that did not change', async () => {
    await policy.idle();
    const ids = await readStored(inputs).then(
      (s) => new Map([...s.pods].map(([k, d]) => [k, d.value])),
    );
    const seqs = await maxSeqs(inputs);
    await policy.stop();
    policy = startPolicy(policyBus);
    await policy.start();
    // Something new after the restart, on each input, to know the replay is behind us.
    await publishNamespace(inputs, 'w', { ns: 'w' });
    await publishPolicy(inputs, 'w', 'marker', { podSelector: {} });
    await publishPod(inputs, 'w', 'marker', {
      labels: { pod: 'm' },
      node: 'n3',
      ips: ['198.18.4.10'],
    });
    await vi.waitFor(async () => {
      expect(await nodePolicy(inputs, 'n3', 'w', 'marker')).toBeDefined();
      const s = await readStored(inputs);
      expect([...s.statuses.values()].some((d) => d.value.name === 'marker')).toBe(true);
    }, WAIT);
    await policy.idle();
    const s = await readStored(inputs);
    const newer = [s.identities, s.pods, s.statuses, s.nodePolicies].flatMap((m, i) =>
      [...m].filter(([, d]) => d.streamSeq > (seqs[i] ?? 0)).map(([subject]) => subject),
    );
    const markerId = await podIdentity(inputs, 'w', 'marker');
    expect(markerId).toBeDefined();
    expect(newer.sort()).toEqual(
      [
        policyIdentitySubject(markerId ?? -1),
        policyPodSubject('w', 'marker'),
        policyStatusSubject('w', 'marker'),
        nodePolicySubject('n3', 'w', 'marker'),
      ].sort(),
    );
    for (const [k, v] of ids) expect(s.pods.get(k)?.value).toEqual(v);
    // The malformed allow-y is still the stream's last value: the restarted service enforces the
    // version it accepted before, as its status records.
    expect((await nodePolicy(inputs, 'n1', 'x', 'a'))?.policies).toEqual(['allow-y']);
  });

  it('a resync tombstones what the streams hold and the live state does not', async () => {
    const ghost = nodePolicySubject('n9', 'x', 'ghost');
    const open = { enforce: false, peers: [], cidrs: { IPv4: [], IPv6: [] } };
    await inputs.jsPublish(PodPolicyDesiredV2, ghost, {
      op: 'upsert',
      namespace: 'x',
      name: 'ghost',
      uid: 'uid-ghost',
      identity: 70000,
      policies: [],
      ingress: { ...open, enforce: true },
      egress: open,
    });
    await policy.resync();
    await policy.idle();
    await vi.waitFor(async () => {
      expect((await readStored(inputs)).nodePolicies.get(ghost)?.value.op).toBe('delete');
    }, WAIT);
  });

  it('a pod that leaves (deleted, or host-network) loses its messages', async () => {
    await publishPod(inputs, 'x', 'b', POD.xb, 'delete');
    await publishPod(inputs, 'y', 'b', { ...POD.yb, hostNetwork: true });
    await vi.waitFor(async () => {
      // Tombstones: the last value of each subject is a delete.
      const s = await readStored(inputs);
      expect(s.pods.get(policyPodSubject('x', 'b'))?.value.op).toBe('delete');
      expect(s.pods.get(policyPodSubject('y', 'b'))?.value.op).toBe('delete');
      expect(s.nodePolicies.get(nodePolicySubject('n2', 'x', 'b'))?.value.op).toBe('delete');
      expect(s.nodePolicies.get(nodePolicySubject('n1', 'y', 'b'))?.value.op).toBe('delete');
    }, WAIT);
  });
});
