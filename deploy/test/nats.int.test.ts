// The chart's NATS as rendered, run for real: three nats-server processes (the pinned binary)
// with the rendered nats.conf and certificate, each on its own loopback address as the three NATS
// nodes' host networks would be, form one JetStream cluster that takes clients only over TLS and
// only through the auth callout. The callout (services/nats-auth, in-process, its TokenReview
// replaced: there is no API server here) writes the authorization block the servers include and
// admits a token as its identity; the bootstrap service's keeper, admitted through the callout
// as `bootstrap`, declares Dyad's streams and buckets with dyad-config's jetstream-replicas; a
// stream keeps taking messages with one server gone. Under the rendered dyad-config (production) a process without credentials refuses to start.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, tokenAuthenticator } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { KubeConfig } from '@kubernetes/client-node';
import { connectBus, natsSettings, readStreamReplicas } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import { StreamKeeper, createBootstrapMetrics } from '@dyad/bootstrap';
import {
  ALL_KV_BUCKETS,
  ALL_STREAMS,
  DYAD_CONFIG_DIR,
  IpamKvBucket,
  K8sStream,
  k8sObjectSubject,
} from '@dyad/contracts';
import { SecretKey, startNatsAuth } from '@dyad/nats-auth';
import type { NatsAuth, SecretStore, StoredSecret } from '@dyad/nats-auth';
import { createLogger, createMetrics } from '@dyad/telemetry';
import {
  freePorts,
  keepFromEnv,
  makeTempDir,
  probe200,
  removeTempDir,
  spawnLogged,
  toolPath,
  waitUntilReady,
} from '@dyad/testbed';
import type { ManagedProcess } from '@dyad/testbed';
import { envOf, find, render, workload } from './chart.ts';

// 127.0.0.0/8 is all loopback on Linux: three addresses stand in for three nodes.
const NODES = ['127.0.0.1', '127.0.0.2', '127.0.0.3'];
/** The tokens the stand-in TokenReview accepts: kube-bridge's and the bootstrap service's. */
const KUBE_BRIDGE_TOKEN = 'kube-bridge-token';
const BOOTSTRAP_TOKEN = 'bootstrap-token';

let dir: string;
const teardown: (() => unknown)[] = [];
const servers: ManagedProcess[] = [];
let natsUrl: string;
let caFile: string;
let monitorPort: number;
let configData: Record<string, string>;
let agentConfigDir: string | undefined;
let mounted: string;
let auth: NatsAuth | undefined;
let bootstrapBus: Bus | undefined;
let keeper: StreamKeeper | undefined;

/** Secret dyad-nats-auth as the chart creates it (empty), in memory. */
function memorySecret(): SecretStore & { current: () => StoredSecret } {
  let s: StoredSecret = { data: {}, resourceVersion: '1' };
  return {
    current: () => s,
    read: () => Promise.resolve(s),
    write: (data, rv) => {
      if (rv !== s.resourceVersion) return Promise.resolve(false);
      s = { data, resourceVersion: String(Number(rv) + 1) };
      return Promise.resolve(true);
    },
  };
}

beforeAll(async () => {
  const [client, cluster, monitor] = await freePorts(3);
  if (client === undefined || cluster === undefined || monitor === undefined) {
    throw new Error('no free ports');
  }
  monitorPort = monitor;
  const ms = await render('ipv4', {
    set: {
      'nats.nodeAddresses': NODES,
      'nats.ports': { client, cluster, monitor },
      // room for every stream's byte limit (the flows and dead letters reserve 256 MiB each)
      'nats.jetstream': { maxMemoryStore: '64MB', maxFileStore: '1GB' },
    },
  });
  const secret = find(ms, 'Secret', 'dyad-nats').stringData as Record<string, string>;
  const agent = workload(ms, 'DaemonSet', 'dyad-agent').spec.template.spec.containers[0];
  if (agent === undefined) throw new Error('no agent container');
  natsUrl = envOf(agent, 'NATS_URL')?.value ?? '';
  configData = find(ms, 'ConfigMap', 'dyad-config').data as Record<string, string>;
  agentConfigDir = envOf(agent, 'DYAD_CONFIG_DIR')?.value;
  dir = makeTempDir('dyad-chart-nats-', keepFromEnv());
  teardown.push(() => {
    removeTempDir(dir, keepFromEnv());
  });
  // The ConfigMap as the kubelet mounts it: one file per key.
  mounted = join(dir, 'config');
  mkdirSync(mounted);
  for (const [key, value] of Object.entries(configData)) writeFileSync(join(mounted, key), value);
  caFile = join(dir, 'ca.crt');
  writeFileSync(caFile, secret['ca.crt'] ?? '');

  // The callout's first start fills its Secret; the servers' configuration includes auth.conf.
  const keySecret = memorySecret();
  const logger = createLogger({ service: 'nats-auth', level: 'silent' });
  const starting = startNatsAuth({
    kubeConfig: new KubeConfig(),
    namespace: 'kube-system',
    secretName: 'dyad-nats-auth',
    audience: 'dyad-nats',
    servers: natsUrl.split(','),
    caFile,
    logger,
    registry: createMetrics({ processMetrics: false }),
    secrets: keySecret,
    review: (token) => {
      const account = {
        [KUBE_BRIDGE_TOKEN]: 'dyad-kube-bridge',
        [BOOTSTRAP_TOKEN]: 'dyad-bootstrap',
      }[token];
      return Promise.resolve(
        account === undefined
          ? { authenticated: false, error: 'unknown token' }
          : { authenticated: true, username: `system:serviceaccount:kube-system:${account}` },
      );
    },
  });
  await vi.waitFor(() => expect(keySecret.current().data[SecretKey.authConf]).toBeDefined(), {
    timeout: 10_000,
  });

  NODES.forEach((address, i) => {
    // the pod's projected volume: nats.conf, the certificate and auth.conf in one directory
    const confDir = join(dir, `nats-${i}`);
    const store = join(confDir, 'store');
    mkdirSync(store, { recursive: true });
    for (const key of ['tls.crt', 'tls.key']) writeFileSync(join(confDir, key), secret[key] ?? '');
    writeFileSync(join(confDir, 'auth.conf'), keySecret.current().data[SecretKey.authConf] ?? '');
    const conf = (secret['nats.conf'] ?? '')
      .replace('store_dir: /data', `store_dir: "${store}"`)
      .replaceAll('/etc/nats/', `${confDir}/`);
    writeFileSync(join(confDir, 'nats.conf'), conf);
    servers.push(
      spawnLogged({
        name: `nats-${i}`,
        command: toolPath('nats-server'),
        args: ['-c', join(confDir, 'nats.conf')],
        logPath: join(dir, `nats-${i}.log`),
        env: { ...process.env, POD_NAME: `dyad-nats-${i}`, POD_IP: address },
      }),
    );
  });
  // ready as the readiness probe sees it: JetStream current, the meta leader known
  await Promise.all(
    servers.map((s, i) =>
      waitUntilReady(s, () => probe200(`http://${NODES[i]}:${monitor}/healthz`), {
        timeoutMs: 60_000,
        what: 'JetStream-ready',
      }),
    ),
  );
  auth = await starting;
  const a = auth;
  await vi.waitFor(() => expect(a.ready()).toBe(true), { timeout: 60_000, interval: 200 });
  // the bootstrap service as the chart runs it: its projected token, through the callout
  const tokenFile = join(dir, 'bootstrap-token');
  writeFileSync(tokenFile, BOOTSTRAP_TOKEN);
  bootstrapBus = await connectBus({
    servers: natsUrl.split(','),
    caFile,
    tokenFile,
    identity: 'bootstrap',
    name: 'bootstrap',
    streamReplicas: readStreamReplicas(mounted),
    logger,
    registry: createMetrics({ processMetrics: false }),
  });
  keeper = new StreamKeeper({
    bus: bootstrapBus,
    streams: ALL_STREAMS,
    buckets: ALL_KV_BUCKETS,
    checkIntervalMs: 60_000,
    logger,
    metrics: createBootstrapMetrics(createMetrics({ processMetrics: false })),
  });
  await keeper.start();
}, 120_000);

afterAll(async () => {
  await keeper?.stop();
  await bootstrapBus?.close();
  await auth?.stop();
  await Promise.all(servers.map((s) => s.stop()));
  for (const undo of teardown.reverse()) await undo();
});

/** A connection admitted by the callout as kube-bridge, over TLS. */
const asKubeBridge = (): Promise<NatsConnection> =>
  connect({
    servers: natsUrl.split(','),
    tls: { caFile },
    authenticator: tokenAuthenticator(KUBE_BRIDGE_TOKEN),
    inboxPrefix: '_INBOX_kube-bridge',
  });

describe('the rendered NATS', () => {
  it('forms one cluster of three JetStream servers', async () => {
    const res = await fetch(`http://${NODES[0]}:${monitorPort}/jsz`);
    const jsz = (await res.json()) as { meta_cluster?: { cluster_size?: number } };
    expect(jsz.meta_cluster?.cluster_size).toBe(3);
  });

  it('fsyncs JetStream every 10 s, as the lab does (lab/README.md says why)', async () => {
    const res = await fetch(`http://${NODES[0]}:${monitorPort}/varz`);
    const varz = (await res.json()) as { jetstream?: { config?: { sync_interval?: number } } };
    expect(varz.jetstream?.config?.sync_interval).toBe(10e9);
  });

  it('refuses a client that does not trust its CA, and one without an admitted token', async () => {
    await expect(
      connect({ servers: natsUrl.split(','), reconnect: false, timeout: 5000 }),
      // the server requires TLS: nats.js upgrades, and without the CA cannot trust the server
    ).rejects.toThrow(/certificate/i);
    for (const token of [undefined, 'someone-else']) {
      await expect(
        connect({
          servers: natsUrl.split(','),
          reconnect: false,
          timeout: 10_000,
          tls: { caFile },
          ...(token === undefined ? {} : { token }),
        }),
      ).rejects.toThrow(/Authorization Violation/i);
    }
  });

  it('under the rendered dyad-config a process without credentials refuses to start', () => {
    expect(agentConfigDir).toBe(DYAD_CONFIG_DIR);
    expect(() => natsSettings({ NATS_URL: natsUrl, DYAD_CONFIG_DIR: mounted })).toThrow(
      /says production/,
    );
  });

  it("the bootstrap service, admitted through the callout, declared Dyad's streams and buckets with dyad-config's jetstream-replicas", async () => {
    expect(readStreamReplicas(mounted)).toBe(3);
    const nc = await asKubeBridge();
    try {
      const jsm = await jetstreamManager(nc);
      for (const name of [K8sStream.name, `KV_${IpamKvBucket.bucket}`]) {
        const info = await jsm.streams.info(name);
        expect(info.config.num_replicas, name).toBe(3);
        // the group really has three members: a leader and two replicas
        await vi.waitFor(
          async () =>
            expect((await jsm.streams.info(name)).cluster?.replicas ?? []).toHaveLength(2),
          { timeout: 60_000, interval: 200 },
        );
      }
      // the callout's identity for kube-bridge may not administer streams
      await expect(jsm.streams.purge(K8sStream.name)).rejects.toThrow();
    } finally {
      await nc.close();
    }
  });

  it('keeps a stream of jetstream-replicas replicas writable with one server gone', async () => {
    const nc: NatsConnection = await asKubeBridge();
    try {
      const jsm = await jetstreamManager(nc);
      const js = jetstream(nc);
      const subject = k8sObjectSubject('Node', undefined, 'chart-test');
      // a replicated stream answers once its leader's interest has crossed the cluster routes;
      // until then a publish meets no responders. The message id makes retries one write.
      await vi.waitFor(() => js.publish(subject, 'one', { msgID: 'one', timeout: 2000 }), {
        timeout: 60_000,
        interval: 200,
      });

      await servers[2]?.stop();
      // acknowledged once the remaining two servers have elected a new stream leader
      await vi.waitFor(() => js.publish(subject, 'two', { msgID: 'two', timeout: 2000 }), {
        timeout: 60_000,
        interval: 200,
      });
      const last = await jsm.streams.getMessage(K8sStream.name, { last_by_subj: subject });
      expect(last?.string()).toBe('two');
      expect(last?.seq).toBeGreaterThan(1);
    } finally {
      await nc.close();
    }
  });
});
