import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { EventsV1Api } from '@kubernetes/client-node';
import type { Bus } from '@dyad/bus';
import { PolicyStatusEvent, policyStatusSubject } from '@dyad/contracts';
import type { PayloadOf } from '@dyad/contracts';
import { createLogger } from '@dyad/telemetry';
import type { KubeCluster, NatsServer } from '@dyad/testbed';
import { startKube, startNats } from '@dyad/testbed';
import {
  EVENT_REASON,
  PolicyEventReporter,
  apiEventSink,
  problemEvent,
} from '../src/policy-events.ts';
import { connectTestBus, kubeClients } from './harness.ts';

// A NetworkPolicy status with problems on NATS becomes one Warning Event on the object in a real
// apiserver: once per (uid, resourceVersion, problems), also across a restart of the reporter.
let nats: NatsServer;
let kube: KubeCluster;
let bus: Bus;

beforeAll(async () => {
  [nats, kube] = await Promise.all([startNats(), startKube()]);
  bus = await connectTestBus(nats.url, 'kube-bridge-events-test');
});

afterAll(async () => {
  await bus.close();
  await Promise.all([nats.stop(), kube.stop()]);
});

type Status = Extract<PayloadOf<typeof PolicyStatusEvent>, { op: 'upsert' }>;

function status(name: string, uid: string, rv: string, problems: Status['problems']): Status {
  return {
    op: 'upsert',
    namespace: 'default',
    name,
    uid,
    resourceVersion: rv,
    problems,
    accepted: {
      metadata: { name, namespace: 'default', uid, resourceVersion: rv, labels: {} },
      spec: {
        podSelector: { matchLabels: {}, matchExpressions: [] },
        policyTypes: ['Ingress'],
        ingress: [],
        egress: [],
      },
    },
  };
}

const range = {
  code: 'bad-port-range' as const,
  path: 'spec.ingress[0].ports[0]',
  message: 'endPort 70 is below port 80: this port entry allows nothing',
};

it('reports problems once per version of the policy, and nothing for a policy enforced as written', async () => {
  const { kc } = kubeClients(kube.kubeconfigPath);
  const events = kc.makeApiClient(EventsV1Api);
  const ours = async () =>
    (await events.listNamespacedEvent({ namespace: 'default' })).items.filter(
      (e) => e.reason === EVENT_REASON,
    );
  const logger = createLogger({ service: 'events-test', level: 'silent' });
  const start = async () => {
    const r = new PolicyEventReporter({ bus, sink: apiEventSink(kc), logger, instance: 'test-1' });
    await r.start();
    return r;
  };

  let reporter = await start();
  await bus.jsPublish(
    PolicyStatusEvent,
    policyStatusSubject('default', 'clean'),
    status('clean', 'u0', '1', []),
  );
  await bus.jsPublish(
    PolicyStatusEvent,
    policyStatusSubject('default', 'ranged'),
    status('ranged', 'u1', '5', [range]),
  );
  await vi.waitFor(async () => expect(await ours()).toHaveLength(1), {
    timeout: 20_000,
    interval: 200,
  });
  const [first] = await ours();
  expect(first?.type).toBe('Warning');
  expect(first?.regarding).toMatchObject({ kind: 'NetworkPolicy', name: 'ranged', uid: 'u1' });
  expect(first?.note).toContain('spec.ingress[0].ports[0]');
  expect(first?.reportingController).toBe('dyad.io/policy');

  // a restart replays the last status of every policy: no second Event for the same version
  await reporter.stop();
  reporter = await start();
  // a new version with the same problem is another Event; published after the replay, so once
  // it is there the replay has been handled too
  await bus.jsPublish(
    PolicyStatusEvent,
    policyStatusSubject('default', 'ranged'),
    status('ranged', 'u1', '6', [range]),
  );
  await vi.waitFor(async () => expect(await ours()).toHaveLength(2), {
    timeout: 20_000,
    interval: 200,
  });
  const versions = (await ours()).map((e) => e.regarding?.resourceVersion).sort();
  expect(versions).toEqual(['5', '6']);
  await reporter.stop();
});

it('names the Event after the object and its problems, and truncates the note to the API limit', () => {
  const many = Array.from({ length: 40 }, (_, i) => ({
    ...range,
    path: `spec.ingress[${i}].ports[0]`,
  }));
  const e = problemEvent(status('p', 'u', '1', many), 'i', new Date(0));
  expect(e?.metadata?.name).toMatch(/^p\.dyad-[0-9a-f]{16}$/);
  expect(e?.note?.length).toBe(1024);
  expect(problemEvent(status('p', 'u', '1', []), 'i', new Date(0))).toBeUndefined();
  const other = problemEvent(status('p', 'u', '2', many), 'i', new Date(0));
  expect(other?.metadata?.name).not.toBe(e?.metadata?.name);
});
