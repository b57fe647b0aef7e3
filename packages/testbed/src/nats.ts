import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { probe200 } from './http.ts';
import { natsConfig } from './nats-config.ts';
import { natsSecurityConfig } from './nats-security.ts';
import type { NatsSecurity } from './nats-security.ts';
import { freePorts, retryOnPortClash } from './ports.ts';
import { spawnLogged, waitUntilReady } from './process.ts';
import type { ManagedProcess } from './process.ts';
import { keepFromEnv, makeTempDir, removeTempDir } from './reaper.ts';
import { toolPath } from './tools.ts';

export interface NatsOptions {
  /** Directory holding the pinned binaries; default `<repo>/tools/bin`. */
  binDir?: string;
  /** Appended to the nats-server command line (e.g. to test start-up failures). */
  extraArgs?: readonly string[];
  readyTimeoutMs?: number;
  /** Keep the temp dir (config, JetStream store, log) after stop; default: env DYAD_KEEP_TESTBED=1. */
  keep?: boolean;
  /** TLS and NKey identities with permissions (natsSecurityConfig); default: open, for tests. */
  security?: NatsSecurity;
  /** Top-level settings appended to the configuration (e.g. an auth callout's authorization). */
  extraConfig?: string;
}

export interface NatsServer {
  /** nats://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  /** http://127.0.0.1:<monitor port> (/varz, /jsz, /healthz). */
  readonly monitorUrl: string;
  readonly dir: string;
  readonly storeDir: string;
  readonly logPath: string;
  /** Current log contents (all restarts append to the same file). */
  logs(): string;
  /** Stops the server and removes its temp dir. */
  stop(): Promise<void>;
  /** Stops (if running) and starts again on the same port with the same store: for reconnect tests. */
  restart(): Promise<void>;
  /** SIGKILL, no clean shutdown; restart() brings it back. */
  kill(): Promise<void>;
}

/** Starts nats-server with JetStream on free 127.0.0.1 ports in a temp dir; resolves once healthy. */
export function startNats(options: NatsOptions = {}): Promise<NatsServer> {
  return retryOnPortClash(() => startNatsOnce(options));
}

async function startNatsOnce(options: NatsOptions): Promise<NatsServer> {
  const binary = toolPath('nats-server', options.binDir);
  const keep = options.keep ?? keepFromEnv();
  const dir = makeTempDir('dyad-nats-', keep);
  const [port, monitorPort] = await freePorts(2);
  if (port === undefined || monitorPort === undefined) throw new Error('no free ports');
  const storeDir = join(dir, 'jetstream');
  mkdirSync(storeDir);
  const configPath = join(dir, 'nats.conf');
  const logPath = join(dir, 'nats-server.log');
  writeFileSync(
    configPath,
    natsConfig({
      serverName: 'dyad-testbed',
      host: '127.0.0.1',
      port,
      monitorPort,
      storeDir,
    }) +
      (options.security === undefined
        ? ''
        : natsSecurityConfig(options.security.identities, options.security.tls)) +
      (options.extraConfig ?? ''),
  );
  const monitorUrl = `http://127.0.0.1:${monitorPort}`;
  let proc: ManagedProcess | undefined;

  const launch = async (): Promise<void> => {
    const started = spawnLogged({
      name: 'nats-server',
      command: binary,
      args: ['-c', configPath, ...(options.extraArgs ?? [])],
      logPath,
    });
    proc = started;
    try {
      await waitUntilReady(started, () => probe200(`${monitorUrl}/healthz?js-enabled-only=true`), {
        timeoutMs: options.readyTimeoutMs ?? 30_000,
        what: 'healthy with JetStream',
      });
    } catch (error) {
      await started.kill();
      throw error;
    }
  };

  try {
    await launch();
  } catch (error) {
    removeTempDir(dir, keep);
    throw error;
  }

  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    monitorUrl,
    dir,
    storeDir,
    logPath,
    logs: () => readFileSync(logPath, 'utf8'),
    stop: async () => {
      await proc?.stop();
      removeTempDir(dir, keep);
    },
    restart: async () => {
      await proc?.stop();
      await launch();
    },
    kill: async () => {
      await proc?.kill();
    },
  };
}
