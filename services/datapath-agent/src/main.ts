// datapath-agent: one per node, run in the node's network namespace. Settings from the
// environment (config.ts). Serves dyad-cni on DYAD_CNI_SOCKET, the read-only API on
// DYAD_API_SOCKET, /metrics /healthz /readyz on DYAD_HEALTH_PORT. Wiring only: each part has
// its own module.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  KeyedPublisher,
  connectBus,
  installSignalHandlers,
  jsPublishJob,
  oneAtATime,
  retryWithBackoff,
} from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import {
  AgentStream,
  FlowStream,
  IpamAllocationsStream,
  IpamNodesStream,
  NodeDesiredStream,
  PolicyStream,
  RouterStream,
  UninstallReply,
  UninstallRequest,
  uninstallSubject,
} from '@dyad/contracts';
import { Libbpf } from '@dyad/libbpf-ts';
import { createLogger, createMetrics, startHealthServer, startTracing } from '@dyad/telemetry';
import { startApiServer } from './api.ts';
import { handleCni } from './cni/handler.ts';
import { podContextFromBus } from './cni/trace.ts';
import { startCniServer } from './cni/server.ts';
import { loadConfig } from './config.ts';
import { NodeDatapath } from './datapath/node.ts';
import { DatapathReconciler } from './datapath/reconciler.ts';
import { desiredMaps } from './datapath/desired-maps.ts';
import type { DesiredInputs } from './datapath/desired-maps.ts';
import { mapDrift } from './datapath/drift.ts';
import type { PolicyState, RouterState } from './datapath/desired-maps.ts';
import type { ServiceState } from './datapath/desired-lb.ts';
import { debounce } from './datapath/schedule.ts';
import { GroupCommitFile } from './durable.ts';
import { EndpointManager } from './endpoint-manager.ts';
import { DesiredStateFollower } from './follower.ts';
import { FlowDirectory } from './flows/directory.ts';
import { startFlows } from './flows/flows.ts';
import { nodeBlockList } from './ipam/blocks.ts';
import { NodeIpam } from './ipam/node-ipam.ts';
import { createAgentMetrics, createReconcileHistogram } from './metrics.ts';
import { openLibc } from './netlink/libc.ts';
import { Netns } from './netlink/netns.ts';
import { linkByName } from './netlink/rtnl.ts';
import { NodeRoutes } from './node-routes.ts';
import { PodPlumber } from './plumber.ts';
import { NatsEndpointReporter } from './reporter.ts';
import { legacySlots, prepareRestore, readRebuildSource } from './restore.ts';
import type { PublishLatest, RestoreReport } from './endpoint-manager.ts';
import { renderState } from './state.ts';
import { NodeUninstall } from './uninstall.ts';

const SERVICE = 'datapath-agent';

async function main(): Promise<void> {
  const cfg = loadConfig(process.env);
  const tracing = await startTracing({
    service: SERVICE,
    resource: { 'k8s.node.name': cfg.nodeName },
  });
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
    ctEntries: cfg.ctEntries,
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
  const records = new KeyedPublisher({
    concurrency: 16,
    backoff: { initialMs: 250, maxMs: 10_000 },
    onError: (subject, err, attempt) =>
      logger.warn({ err, subject, attempt }, 'record not published yet; retrying'),
  });
  const publish: PublishLatest = (contract, subject, payload, opts) =>
    records.enqueue(jsPublishJob(() => conn.bus, contract, subject, payload, opts));
  const reporter = new NatsEndpointReporter(() => conn.bus, cfg.nodeName, publish);
  datapath.load();
  const start = prepareRestore({
    stateFile: cfg.stateFile,
    node: cfg.nodeName,
    datapath,
    logger,
  });
  const allocator = start.allocator;
  // one file, written whole: the endpoints and the allocations they hold commit together
  const holder: { manager?: EndpointManager; uninstall?: NodeUninstall } = {};
  const stateFile = new GroupCommitFile(cfg.stateFile, () =>
    renderState({
      v: 2,
      node: cfg.nodeName,
      objectHash: datapath.objectHash,
      ipam: allocator.toJSON(),
      endpoints: holder.manager?.endpoints() ?? [],
    }),
  );
  mkdirSync(dirname(cfg.stateFile), { recursive: true });
  await stateFile.load(); // removes what a write cut short by a crash left beside the file
  // once Dyad is being uninstalled nothing writes the state file again: its directory goes
  const commit = () => (holder.uninstall?.done ? Promise.resolve() : stateFile.commit());
  const ipam = new NodeIpam({
    node: cfg.nodeName,
    allocator,
    publish,
    bus: () => conn.bus,
    preAllocate: cfg.ipam.preAllocate,
    growWaitMs: cfg.ipam.growWaitMs,
    growTimeoutMs: cfg.ipam.timeoutMs,
    onBlocks: () => {
      commit().catch((err: unknown) => logger.error({ err }, 'state file not written'));
    },
    logger,
  });
  const routes = new NodeRoutes(netns);
  const inputs: {
    router: () => RouterState;
    policy: () => PolicyState;
    services: () => ServiceState;
  } = {
    router: () => follower.router(),
    policy: () => follower.policy(),
    services: () => follower.services(),
  };
  const reconcileSeconds = createReconcileHistogram(registry);
  const desiredInputs = (): DesiredInputs => ({
    endpoints: holder.manager?.ready() ?? [],
    router: inputs.router(),
    policy: inputs.policy(),
    services: inputs.services(),
    nodeId: cfg.nodeId,
    initIdentity: cfg.initIdentity,
  });
  const reconciler: DatapathReconciler = new DatapathReconciler({
    datapath,
    inputs: desiredInputs,
    onView: (ep, view) => holder.manager?.applyView(ep, view),
    schedule: debounce(cfg.coalesceMs, cfg.coalesceMaxMs),
    onError: (err) => logger.error({ err }, 'datapath maps not written'),
    onPass: (seconds, kind) => reconcileSeconds.observe({ kind }, seconds),
  });
  // who is behind an address, for flows: the router's ipcache, else this node's own endpoints
  const flowDirectory = new FlowDirectory(
    (address) =>
      holder.manager
        ?.endpoints()
        .find((e) => e.ipv4?.address === address || e.ipv6?.address === address)?.pod,
  );
  const follower: DesiredStateFollower = new DesiredStateFollower({
    node: cfg.nodeName,
    reconciler,
    routes,
    onBlocks: (blocks) => ipam.setBlocks(blocks),
    pods: flowDirectory,
    // the router republished this node's state after the bus lost it: read it whole again
    onRouterRestored: () => follow.trigger(),
    logger,
  });
  const plumber = new PodPlumber(netns, datapath);
  const agent = new EndpointManager({
    node: cfg.nodeName,
    vethPrefix: cfg.vethPrefix,
    initIdentity: cfg.initIdentity,
    datapath,
    plumber,
    reconciler,
    addressing: ipam,
    commit,
    reporter,
    logger,
  });
  holder.manager = agent;
  const metrics = createAgentMetrics(registry, agent, datapath, allocator, cfg.nodeName);
  const flows = startFlows({
    lib,
    datapath,
    node: cfg.nodeName,
    trace: cfg.flowTrace,
    directory: flowDirectory,
    ifname: (ifindex) => agent.endpoints().find((e) => e.hostIfindex === ifindex)?.hostIfName,
    registry,
    onError: (err) => logger.error({ err }, 'the ring buffer is no longer drained'),
  });
  const objectChanged = start.objectHash !== undefined && start.objectHash !== datapath.objectHash;
  let restore: RestoreReport | undefined;
  // after losing its state file the agent serves nothing until NATS has told it what it had
  if (start.mode !== 'rebuild') restore = await agent.restore(start.endpoints, objectChanged);
  ipam.adoptOnBlocks(start.adopt);
  logger.info({ mode: start.mode, endpoints: start.endpoints.length }, 'state loaded');

  const podTrace = podContextFromBus(() => conn.bus);
  const cni = await startCniServer(
    cfg.cniSocket,
    async (raw) => {
      const t0 = process.hrtime.bigint();
      const reply = await handleCni(raw, agent, {
        podContext: podTrace,
        lookupMs: cfg.cniTraceLookupMs,
      });
      metrics.observeCni(reply, Number(process.hrtime.bigint() - t0) / 1e9);
      if (reply.errorCode !== undefined)
        logger.warn(
          { command: reply.request?.command, code: reply.errorCode, out: reply.stdout.trim() },
          'CNI call failed',
        );
      return reply;
    },
    (err) => logger.warn({ err }, 'CNI socket error'),
    { onRefused: (why) => logger.warn({ socket: cfg.cniSocket, why }, 'CNI connection refused') },
  );
  const api = await startApiServer(
    cfg.apiSocket,
    {
      node: cfg.nodeName,
      agent,
      datapath,
      startedAt,
      natsConnected: () => conn.bus?.isConnected() ?? false,
      natsServers: cfg.nats.servers,
      blocks: () => nodeBlockList(allocator.blocks()),
      services: () => follower.services().entries,
      restore: () => restore,
      cniSocket: cfg.cniSocket,
      drift: () => {
        const now = desiredInputs();
        return mapDrift(
          desiredMaps(now),
          datapath.loaded.maps,
          new Set(now.endpoints.map((e) => e.endpointId)),
        );
      },
      flows: {
        counters: () => flows.counters(),
        listen: (l) => flows.exporter.listen(l),
      },
    },
    { onRefused: (why) => logger.warn({ socket: cfg.apiSocket, why }, 'API connection refused') },
  );
  let stopping = false;
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

  const removal = new NodeUninstall(
    {
      quiesce: async () => {
        stopping = true;
        await cni.close();
        await api.close();
        await follow.running();
        await follower.stop();
        await flows.close();
        await stateFile.idle();
      },
      detachUplinks: () => {
        const host = netns.socketHere();
        try {
          return cfg.uplinks.filter((name) => {
            const link = linkByName(host, name);
            return link !== undefined && datapath.detachIngress(link.index);
          });
        } finally {
          host.close();
        }
      },
      removePodLinks: () => {
        const names = new Set(agent.endpoints().map((e) => e.hostIfName));
        // also a device an ADD cut short left behind: a veth named with this node's prefix
        for (const l of plumber.hostLinks())
          if (l.kind === 'veth' && l.name.startsWith(cfg.vethPrefix)) names.add(l.name);
        return [...names].filter((name) => plumber.removeHostLink(name));
      },
      removeNodeRoutes: () => routes.clear(),
      closeDatapath: () => datapath.close(),
    },
    { ...cfg.uninstall, pinDir: cfg.pinDir, pinRoot: cfg.pinRoot },
  );
  holder.uninstall = removal;

  // NATS last: pods on this node are added, deleted and keep working while it is away
  const bus = await connectBus({
    ...cfg.nats,
    name: SERVICE,
    logger,
    registry,
    waitOnFirstConnect: true,
  });
  conn.bus = bus;
  let legacyRead = start.mode !== 'legacy';
  // a JetStream call that fails (server busy, stream being created) must not end the agent:
  // it retries until the desired state is followed
  // A JetStream call that fails (server busy, stream being created) must not end the agent: it
  // retries until the desired state is followed. One follow at a time; a reconnect meanwhile runs
  // it once more afterwards (the server may have come back empty, and ordered consumers would
  // skip a recreated stream's first messages).
  const follow = oneAtATime(async () => {
    await retryWithBackoff(
      async (attempt) => {
        await follower.stop();
        // the same declarations their writers use; where the bus has identities only the
        // bootstrap identity may create them, and this waits (retries) until it has
        await bus.ensureStreams([
          AgentStream,
          NodeDesiredStream,
          RouterStream,
          IpamNodesStream,
          IpamAllocationsStream,
          PolicyStream,
          FlowStream,
        ]);
        if (!legacyRead) {
          ipam.adoptOnBlocks(await legacySlots(bus, cfg.nodeName));
          legacyRead = true;
        }
        if (restore === undefined) {
          const src = await readRebuildSource(bus, cfg.nodeName, datapath);
          // endpoints first: every state file written from here on holds them, and a start
          // that finds them without their allocations adopts those before any ADD
          restore = await agent.restore(src.endpoints, objectChanged);
          ipam.adoptOnBlocks(src.holders);
          ipam.setBlocks(src.blocks);
          logger.warn(
            { restore, holders: src.holders.length },
            'rebuilt after the state file was lost',
          );
        }
        await follower.start(bus);
        await flows.connect(bus);
        // a server that lost its data gets the node's records again from here
        const reports = await reporter.reconcile(agent.ready());
        const allocations = await ipam.reconcile(bus);
        logger.info({ reports, allocations, attempt }, 'connected to NATS; desired state followed');
      },
      {
        policy: { initialMs: 500, maxMs: 30_000 },
        stopped: () => stopping,
        onError: (err, attempt, retryInMs) => {
          void follower.stop().catch(() => undefined);
          logger.error({ err, attempt, retryInMs }, 'desired state not followed yet; retrying');
        },
      },
    );
  });
  follow.trigger();
  // only `dyad uninstall` (helm's pre-delete hook) asks this; a SIGTERM never cleans the node
  bus.serve(
    UninstallRequest,
    uninstallSubject(cfg.nodeName),
    async () => {
      logger.warn('Dyad is being uninstalled: removing it from this node');
      const out = await removal.run();
      logger.warn(out, 'removed from this node');
      return { node: cfg.nodeName, ...out };
    },
    UninstallReply,
    {
      subjectCheck: (req) =>
        req.node === cfg.nodeName ? undefined : `asks ${req.node}, this is ${cfg.nodeName}`,
    },
  );
  bus.onReconnect(() => {
    records.kick();
    follow.trigger();
  });
  records.kick();

  installSignalHandlers(bus, {
    logger,
    beforeDrain: async () => {
      stopping = true;
      await cni.close();
      await api.close();
      await health.close();
      await follow.running();
      await follower.stop();
      // what is queued goes out if NATS is there; a shutdown never waits for it to come back
      await Promise.race([records.idle(), new Promise((r) => setTimeout(r, 2000).unref())]);
      records.close();
    },
    afterDrain: async () => {
      // maps stay pinned and programs attached: pods keep their traffic while the agent is away
      if (!removal.done) {
        await flows.close();
        datapath.close();
      }
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
