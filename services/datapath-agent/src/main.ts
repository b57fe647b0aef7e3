// datapath-agent: one per node, run in the node's network namespace. Settings from the
// environment (config.ts). Serves dyad-cni on DYAD_CNI_SOCKET, the read-only API on
// DYAD_API_SOCKET, /metrics /healthz /readyz on DYAD_HEALTH_PORT.
import { writeFileSync } from 'node:fs';
import { connectBus, installSignalHandlers } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import {
  AgentStream,
  IPAM_KV_BUCKET,
  IpamNodesStream,
  NodeDesiredStream,
  RouterStream,
} from '@dyad/contracts';
import { Libbpf } from '@dyad/libbpf-ts';
import { createLogger, createMetrics, startHealthServer, startTracing } from '@dyad/telemetry';
import { Agent } from './agent.ts';
import type { RestoreReport } from './agent.ts';
import { NatsAllocator } from './allocator.ts';
import { startApiServer } from './api.ts';
import { handleCni } from './cni/handler.ts';
import { startCniServer } from './cni/server.ts';
import { loadConfig } from './config.ts';
import { NodeDatapath } from './datapath/node.ts';
import { debounce } from './datapath/schedule.ts';
import { DesiredState } from './desired.ts';
import { IpamSweeper } from './ipam-sweep.ts';
import { createAgentMetrics } from './metrics.ts';
import { openLibc } from './netlink/libc.ts';
import { Netns } from './netlink/netns.ts';
import { linkByName } from './netlink/rtnl.ts';
import { NatsEndpointReporter } from './reporter.ts';
import { StateStore } from './state.ts';

const SERVICE = 'datapath-agent';

async function main(): Promise<void> {
  const cfg = loadConfig(process.env);
  const tracing = startTracing({ service: SERVICE });
  const logger = createLogger({ service: SERVICE, level: cfg.logLevel });
  const registry = createMetrics();
  const startedAt = Date.now();

  if (cfg.enableForwarding) {
    // the datapath's bpf_fib_lookup only forwards when the node does
    writeFileSync('/proc/sys/net/ipv4/ip_forward', '1');
    writeFileSync('/proc/sys/net/ipv6/conf/all/forwarding', '1');
  }

  const libc = openLibc();
  const netns = new Netns(libc, (err) => {
    logger.fatal({ err }, 'stranded in a foreign network namespace; exiting');
    process.exit(70);
  });
  const lib = Libbpf.open();
  const datapath = new NodeDatapath(lib, {
    pinDir: cfg.pinDir,
    ...(cfg.bpfObject ? { objectPath: cfg.bpfObject } : {}),
    // desired-state writes; CNI operations flush their own writes at once
    schedule: debounce(cfg.coalesceMs, cfg.coalesceMaxMs),
  });
  const host = netns.socketHere();
  try {
    for (const name of cfg.uplinks) {
      const link = linkByName(host, name);
      if (!link) throw new Error(`uplink ${name} not found in the agent's network namespace`);
      datapath.attachUplink(link.index);
    }
  } finally {
    host.close();
  }

  // set once NATS is up; everything that needs it asks through this holder
  const conn: { bus?: Bus } = {};
  const reporter = new NatsEndpointReporter(() => conn.bus, cfg.nodeName, logger);
  const agent = new Agent({
    node: cfg.nodeName,
    nodeId: cfg.nodeId,
    vethPrefix: cfg.vethPrefix,
    initIdentity: cfg.initIdentity,
    netns,
    datapath,
    allocator: new NatsAllocator(() => conn.bus, cfg.ipamTimeoutMs),
    state: new StateStore(cfg.stateFile, cfg.nodeName),
    reporter,
    logger,
    allocatorReady: () => conn.bus?.isConnected() ?? false,
  });
  const metrics = createAgentMetrics(registry, agent, datapath);
  const restore: RestoreReport = await agent.restore();
  const desired = new DesiredState(agent, cfg.nodeName, logger);

  const cni = await startCniServer(
    cfg.cniSocket,
    async (raw) => {
      const t0 = process.hrtime.bigint();
      const reply = await handleCni(raw, agent);
      metrics.observeCni(reply, Number(process.hrtime.bigint() - t0) / 1e9);
      if (reply.errorCode !== undefined)
        logger.warn(
          { command: reply.request?.command, code: reply.errorCode, out: reply.stdout.trim() },
          'CNI call failed',
        );
      return reply;
    },
    (err) => logger.warn({ err }, 'CNI socket error'),
  );
  const api = await startApiServer(cfg.apiSocket, {
    node: cfg.nodeName,
    agent,
    datapath,
    startedAt,
    natsConnected: () => conn.bus?.isConnected() ?? false,
    natsServers: cfg.nats.servers,
    blocks: () => desired.blocks(),
    restore: () => restore,
    cniSocket: cfg.cniSocket,
  });
  const health = await startHealthServer({
    port: cfg.health.port,
    host: cfg.health.host,
    registry,
    isReady: () => agent.status().ready,
  });
  logger.info(
    { cni: cfg.cniSocket, api: cfg.apiSocket, pinDir: cfg.pinDir, health: health.url, restore },
    'datapath-agent serving',
  );

  // NATS last: pods on this node keep working, and DEL/CHECK keep being served, while it is away
  const bus = await connectBus({
    ...cfg.nats,
    name: SERVICE,
    logger,
    registry,
    waitOnFirstConnect: true,
  });
  conn.bus = bus;
  const sweeper = new IpamSweeper({
    node: cfg.nodeName,
    kv: () => bus.kv(IPAM_KV_BUCKET),
    known: (c) => agent.hasContainer(c),
    release: (c) => agent.releaseUnknown(c.containerId),
    ready: () => agent.restored && bus.isConnected(),
    intervalMs: cfg.ipamSweep.intervalMs,
    graceMs: cfg.ipamSweep.graceMs,
    logger,
    onReleased: () => metrics.sweptContainers.inc(),
  });
  sweeper.start();
  let stopping = false;
  // a JetStream call that fails (server busy, stream being created) must not end the agent:
  // it retries until the desired state is followed
  const follow = async (): Promise<void> => {
    for (let attempt = 1; !stopping; attempt++) {
      try {
        // the same declarations their writers use: creating one first is harmless
        await bus.ensureStreams([AgentStream, NodeDesiredStream, RouterStream, IpamNodesStream]);
        const rec = await reporter.reconcile(agent.endpoints().filter((e) => e.phase === 'ready'));
        await desired.start(bus);
        // releases owed since before the restart (IPAM was out of reach until now)
        void agent.retryReleases();
        logger.info({ reports: rec, attempt }, 'connected to NATS; desired state followed');
        return;
      } catch (err) {
        await desired.stop().catch(() => undefined);
        const wait = Math.min(30_000, 500 * 2 ** Math.min(attempt, 6));
        logger.error({ err, attempt, retryInMs: wait }, 'desired state not followed yet; retrying');
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  };
  void follow();

  installSignalHandlers(bus, {
    logger,
    beforeDrain: async () => {
      stopping = true;
      await sweeper.stop();
      await cni.close();
      await api.close();
      await health.close();
      await desired.stop();
      await reporter.idle();
      reporter.close();
    },
    afterDrain: async () => {
      // maps stay pinned and programs attached: pods keep their traffic while the agent is away
      datapath.close();
      await tracing.shutdown();
    },
  });
}

main().catch((err: unknown) => {
  console.error(
    JSON.stringify({ level: 'fatal', service: SERVICE, msg: 'start-up failed', err: String(err) }),
  );
  process.exit(1);
});
