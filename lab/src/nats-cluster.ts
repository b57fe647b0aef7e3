// The lab's NATS: three nats-servers in one JetStream cluster on 127.0.0.1, each a supervised
// process (restarted when it dies, as a StatefulSet would), each with its own store under the
// lab's tmp dir, so a fault can kill one, wipe its store, or restart them all.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePorts, natsConfig, probe200, toolPath } from '@dyad/testbed';
import type { Supervisor } from './supervisor.ts';

/** JetStream fsync interval of the lab and the chart; lab/README.md says why. */
export const NATS_SYNC_INTERVAL = '10s';
export const NATS_CLUSTER_SIZE = 3;

export interface NatsMember {
  /** Supervised process name and server name: `nats-1` ... */
  readonly name: string;
  readonly port: number;
  readonly clusterPort: number;
  readonly monitorPort: number;
  readonly storeDir: string;
  readonly url: string;
  readonly monitorUrl: string;
}

/**
 * Picks the ports and writes every member's configuration; starts nothing. `clientAuth` (TLS and
 * the identities' permissions, from `natsSecurityConfig`) is appended to every member's file.
 */
export async function planNatsCluster(dir: string, clientAuth = ''): Promise<NatsMember[]> {
  const ports = await freePorts(NATS_CLUSTER_SIZE * 3);
  const members: NatsMember[] = [];
  for (let i = 0; i < NATS_CLUSTER_SIZE; i++) {
    const [port = 0, clusterPort = 0, monitorPort = 0] = ports.slice(i * 3, i * 3 + 3);
    const name = `nats-${i + 1}`;
    members.push({
      name,
      port,
      clusterPort,
      monitorPort,
      storeDir: join(dir, name, 'jetstream'),
      url: `nats://127.0.0.1:${port}`,
      monitorUrl: `http://127.0.0.1:${monitorPort}`,
    });
  }
  const routes = members.map((m) => `nats-route://127.0.0.1:${m.clusterPort}`);
  for (const m of members) {
    mkdirSync(m.storeDir, { recursive: true });
    writeFileSync(
      configPath(dir, m),
      natsConfig({
        serverName: m.name,
        host: '127.0.0.1',
        port: m.port,
        monitorPort: m.monitorPort,
        storeDir: m.storeDir,
        cluster: { name: 'dyad-lab', port: m.clusterPort, routes },
        syncInterval: NATS_SYNC_INTERVAL,
      }) + clientAuth,
    );
  }
  return members;
}

function configPath(dir: string, m: NatsMember): string {
  return join(dir, m.name, 'nats.conf');
}

export function startNatsCluster(
  supervisor: Supervisor,
  dir: string,
  members: readonly NatsMember[],
): void {
  for (const m of members) {
    supervisor.start({
      name: m.name,
      command: toolPath('nats-server'),
      args: ['-c', configPath(dir, m)],
      restart: true,
    });
  }
}

/**
 * Until every member reports healthy: JetStream on, the meta leader known and every stream and
 * consumer it holds current (`/healthz` without options).
 */
export async function waitNatsHealthy(
  members: readonly NatsMember[],
  timeoutMs: number,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await Promise.all(
      members.map(
        async (m) => (await probe200(`${m.monitorUrl}/healthz`).catch(() => false)) === true,
      ),
    );
    if (ok.every(Boolean)) return;
    if (Date.now() > until) {
      const bad = members.filter((_, i) => !ok[i]).map((m) => m.name);
      throw new Error(`NATS not healthy after ${timeoutMs / 1000} s: ${bad.join(', ')}`);
    }
    await sleep(200);
  }
}
