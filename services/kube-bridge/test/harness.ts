import { CoreV1Api, DiscoveryV1Api, KubeConfig, NetworkingV1Api } from '@kubernetes/client-node';
import { vi } from 'vitest';
import { startNats } from '@dyad/testbed';
import type { KubeCluster, NatsServer } from '@dyad/testbed';
import { ALL_CONTRACTS, ALL_STREAMS, K8S_STREAM } from '@dyad/contracts';
import type { Bus } from '@dyad/bus';
import { connectBus } from '@dyad/bus';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { KubeBridge } from '../src/bridge.ts';
import { watchedKinds } from '../src/kinds.ts';
import { createBridgeMetrics } from '../src/metrics.ts';
import type { BridgeMetrics } from '../src/metrics.ts';
import { busStreamPort } from '../src/stream-port.ts';

export interface StreamValue {
  readonly op: 'upsert' | 'delete';
  readonly object: Record<string, unknown> & {
    metadata: { name: string; uid: string; labels: Record<string, string> };
  };
  readonly type: string;
}

export function kubeClients(kubeconfigPath: string) {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    discovery: kc.makeApiClient(DiscoveryV1Api),
    networking: kc.makeApiClient(NetworkingV1Api),
  };
}

export async function connectTestBus(url: string, name: string): Promise<Bus> {
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

/** A KubeBridge wired as main.ts wires it, but in this process so the test can steer it. */
export function makeBridge(
  kubeconfigPath: string,
  bus: Bus,
  resyncIntervalMs = 3_600_000,
  metrics: BridgeMetrics = createBridgeMetrics(createMetrics()),
): KubeBridge {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  return new KubeBridge({
    kubeConfig: kc,
    kinds: watchedKinds(kc),
    stream: busStreamPort(bus, () => undefined),
    logger: createLogger({
      service: 'kube-bridge-test',
      level: process.env.DYAD_TEST_LOG === '1' ? 'debug' : 'silent',
    }),
    metrics,
    resyncIntervalMs,
    tombstoneTtlMs: 3_600_000,
  });
}

/** The stream's current state: last value of every subject. */
export async function streamState(bus: Bus): Promise<Map<string, StreamValue>> {
  const snap = await bus.snapshot(ALL_CONTRACTS, { stream: K8S_STREAM });
  const out = new Map<string, StreamValue>();
  for (const [subject, d] of snap)
    out.set(subject, { ...(d.value as Omit<StreamValue, 'type'>), type: d.meta.type });
  return out;
}

/**
 * A nats-server and the kube cluster `kube` is starting, side by side; each that started is added
 * to `teardown`, so a failure of the other leaves nothing running.
 */
export async function startServers(
  teardown: Array<() => Promise<unknown>>,
  kube: Promise<KubeCluster>,
): Promise<[NatsServer, KubeCluster]> {
  const [n, k] = await Promise.allSettled([startNats(), kube]);
  if (n.status === 'fulfilled') teardown.push(() => n.value.stop());
  if (k.status === 'fulfilled') teardown.push(() => k.value.stop());
  if (n.status === 'rejected') throw n.reason;
  if (k.status === 'rejected') throw k.reason;
  return [n.value, k.value];
}

/** Polls until `check` returns without throwing; rethrows its last failure after the deadline. */
export function eventually<T>(check: () => T | Promise<T>, timeout = 30_000): Promise<T> {
  return vi.waitFor(check, { timeout, interval: 200 });
}

/** Retries an API call that can race with controller-manager set-up (e.g. the default ServiceAccount). */
export function retrying<T>(fn: () => Promise<T>): Promise<T> {
  return vi.waitFor(fn, { timeout: 10_000, interval: 200 });
}
