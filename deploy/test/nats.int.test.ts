// The chart's NATS as rendered, run for real: three nats-server processes (the pinned binary)
// with the rendered nats.conf, each on its own loopback address as the three NATS nodes' host
// networks would be, form one JetStream cluster; a client with the NATS_URL and token the chart
// gives every Dyad process creates a stream with dyad-config's jetstream-replicas, and it keeps
// taking messages when one server is gone. A service's own start (natsSettings from the rendered
// env with dyad-config mounted, connectBus, ensureStreams/ensureKv) declares Dyad's streams and
// buckets at that replica count.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectBus, natsSettings } from '@dyad/bus';
import { DYAD_CONFIG_DIR, IpamKvBucket, K8sStream } from '@dyad/contracts';
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

let dir: string;
const teardown: (() => unknown)[] = [];
const servers: ManagedProcess[] = [];
let natsUrl: string;
let token: string;
let replicas: number;
let monitorPort: number;
let configData: Record<string, string>;
let agentConfigDir: string | undefined;

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
      'nats.jetstream': { maxMemoryStore: '64MB', maxFileStore: '256MB' },
    },
  });
  const secret = find(ms, 'Secret', 'dyad-nats').stringData as Record<string, string>;
  const agent = workload(ms, 'DaemonSet', 'dyad-agent').spec.template.spec.containers[0];
  if (agent === undefined) throw new Error('no agent container');
  natsUrl = envOf(agent, 'NATS_URL')?.value ?? '';
  token = secret.token ?? '';
  configData = find(ms, 'ConfigMap', 'dyad-config').data as Record<string, string>;
  replicas = Number(configData['jetstream-replicas']);
  agentConfigDir = envOf(agent, 'DYAD_CONFIG_DIR')?.value;
  dir = makeTempDir('dyad-chart-nats-', keepFromEnv());
  teardown.push(() => {
    removeTempDir(dir, keepFromEnv());
  });
  NODES.forEach((address, i) => {
    const store = join(dir, `store-${i}`);
    mkdirSync(store);
    const confPath = join(dir, `nats-${i}.conf`);
    // the pod's volume is /data; here each server gets its own directory
    const conf = (secret['nats.conf'] ?? '').replace('store_dir: /data', `store_dir: "${store}"`);
    writeFileSync(confPath, conf);
    servers.push(
      spawnLogged({
        name: `nats-${i}`,
        command: toolPath('nats-server'),
        args: ['-c', confPath],
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
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  for (const undo of teardown.reverse()) await undo();
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

  it('refuses a client without the token', async () => {
    await expect(
      connect({ servers: natsUrl.split(','), reconnect: false, timeout: 5000 }),
    ).rejects.toThrow(/Authorization Violation/i);
  });

  it("a service declares Dyad's streams and buckets with dyad-config's jetstream-replicas", async () => {
    // The ConfigMap as the kubelet mounts it: one file per key, where the rendered env says.
    expect(agentConfigDir).toBe(DYAD_CONFIG_DIR);
    const mounted = join(dir, 'config');
    mkdirSync(mounted);
    for (const [key, value] of Object.entries(configData)) writeFileSync(join(mounted, key), value);
    const settings = natsSettings({
      NATS_URL: natsUrl,
      NATS_TOKEN: token,
      DYAD_CONFIG_DIR: mounted,
    });
    expect(settings.streamReplicas).toBe(3);
    const bus = await connectBus({
      ...settings,
      name: 'chart-test',
      logger: createLogger({ service: 'chart-test', level: 'silent' }),
      registry: createMetrics({ processMetrics: false }),
    });
    try {
      await bus.ensureStreams([K8sStream]);
      await bus.ensureKv([IpamKvBucket]);
      const nc = await connect({ servers: natsUrl.split(','), token });
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
      } finally {
        await nc.close();
      }
    } finally {
      await bus.close();
    }
  });

  it('keeps a stream of jetstream-replicas replicas writable with one server gone', async () => {
    expect(replicas).toBe(3);
    const nc: NatsConnection = await connect({ servers: natsUrl.split(','), token });
    try {
      const jsm = await jetstreamManager(nc);
      const info = await jsm.streams.add({
        name: 'DYAD_CHART_TEST',
        subjects: ['dyad.chart.test.>'],
        num_replicas: replicas,
      });
      expect(info.config.num_replicas).toBe(3);
      const js = jetstream(nc);
      // a new replicated stream answers once its leader's interest has crossed the cluster
      // routes; until then a publish meets no responders. The message id makes retries one write.
      await vi.waitFor(
        () => js.publish('dyad.chart.test.a', 'one', { msgID: 'one', timeout: 2000 }),
        { timeout: 60_000, interval: 200 },
      );

      await servers[2]?.stop();
      // acknowledged once the remaining two servers have elected a new stream leader
      await vi.waitFor(
        () => js.publish('dyad.chart.test.a', 'two', { msgID: 'two', timeout: 2000 }),
        {
          timeout: 60_000,
          interval: 200,
        },
      );
      expect((await jsm.streams.info('DYAD_CHART_TEST')).state.messages).toBe(2);
    } finally {
      await nc.close();
    }
  });
});
