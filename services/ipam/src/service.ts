import type { Family } from '@dyad/netaddr';
import type { Bus, BusConsumer, BusLogger, BusSubscription, Delivery, JsDelivery } from '@dyad/bus';
import { ReplyError } from '@dyad/bus';
import type { NodeBlockValue, PayloadOf } from '@dyad/contracts';
import {
  AddressesExhausted,
  DeadLetterStream,
  GcCompleted,
  GrowReply,
  GrowRequest,
  IPAM_ALLOCATIONS_STREAM,
  IPAM_KV_BUCKET,
  IpamAllocationsStream,
  IpamErrorCode,
  IpamEventKind,
  IpamKey,
  IpamKvBucket,
  IpamNodeEvent,
  IpamNodesStream,
  IPAM_GROW_FILTER,
  IPAM_HELD_FILTER,
  K8sStream,
  NodeBlocksHeld,
  decodeToken,
  ipamAllocFilter,
  ipamEventSubject,
  ipamExhaustedSubject,
  ipamHeldSubject,
  ipamNodeSubject,
} from '@dyad/contracts';
import type { AssignerEffects } from './assigner.ts';
import { AssignError, Assigner } from './assigner.ts';
import { clusterConfigRecord, compatibilityProblems } from './compat.ts';
import type { IpamConfig } from './config.ts';
import { IpamConfigConflictError, StoreError } from './errors.ts';
import { HeldView } from './held.ts';
import { NodeView } from './k8s-view.ts';
import type { IpamMetrics } from './metrics.ts';
import type { NodeRecord } from './record.ts';
import { blockList } from './record.ts';
import { IpamStore, parseBlockKey } from './store.ts';

export interface IpamServiceOptions {
  readonly bus: Bus;
  readonly config: IpamConfig;
  readonly logger: BusLogger;
  readonly metrics: IpamMetrics;
  /** A node deleted this long has its blocks returned to the pool. */
  readonly nodeGraceMs: number;
  /** A block claim no node record uses is removed after this long. */
  readonly orphanGraceMs: number;
  readonly gcIntervalMs: number;
  /**
   * After finding the bucket without node records, how long to claim no block for a new set:
   * node agents that hold blocks (the bucket was lost, not new) have this long to report them.
   */
  readonly rebuildWaitMs: number;
  /** Grow requests handled at once by this replica. */
  readonly concurrency: number;
  readonly now?: () => number;
}

const TOMBSTONE_TTL = '24h';

type HeldDelivery = JsDelivery<PayloadOf<typeof NodeBlocksHeld>>;

/** The node a per-node subject names (its last token); undefined when it does not decode. */
function subjectNode(subject: string): string | undefined {
  try {
    return decodeToken(subject.slice(subject.lastIndexOf('.') + 1));
  } catch {
    return undefined;
  }
}

/**
 * One ipam replica: assigns set 0 when kube-bridge announces a node, answers grow requests in the
 * `ipam` queue group, follows the agents' held-blocks reports (rebuilding lost records from them,
 * never giving their blocks to another node) and garbage-collects deleted nodes' blocks. Replicas
 * share nothing but the bucket (see Assigner).
 */
export class IpamService {
  private readonly opts: IpamServiceOptions;
  private readonly now: () => number;
  private readonly families: readonly Family[];
  private readonly nodeView: NodeView;
  private readonly held = new HeldView();
  private readonly subs: BusSubscription[] = [];
  private heldConsumer: BusConsumer | undefined;
  private assigner: Assigner | undefined;
  private gcTimer: NodeJS.Timeout | undefined;
  private resumeTimer: NodeJS.Timeout | undefined;
  private gcRunning: Promise<void> | undefined;
  private stopped = false;
  private serving = false;
  /** In the rebuild wait: no block is claimed for a new set (see resumeIfAllReported). */
  private rebuildWait = false;
  private nodesRead = false;

  constructor(opts: IpamServiceOptions) {
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    this.families = opts.config.families.map((l) => l.family);
    this.nodeView = new NodeView((name) => this.onNodeLive(name));
  }

  get ready(): boolean {
    return this.serving && this.opts.bus.isConnected();
  }

  async start(): Promise<void> {
    const { bus, logger } = this.opts;
    await bus.ensureStreams([K8sStream, DeadLetterStream, IpamNodesStream, IpamAllocationsStream]);
    await bus.ensureKv([IpamKvBucket]);
    const store = new IpamStore(await bus.kv(IPAM_KV_BUCKET));

    const claims = (await store.keys(IpamKey.blockFilter)).flatMap((k) => {
      const b = parseBlockKey(k);
      return b === undefined ? [] : [b];
    });
    const problems = compatibilityProblems(this.opts.config, claims);
    if (problems.length > 0) {
      throw new IpamConfigConflictError(
        `the configuration does not fit the IPAM state in KV ${IPAM_KV_BUCKET}: ${problems.join('; ')}`,
      );
    }
    await this.recordConfig(store);
    const emptyBucket = (await store.keys(IpamKey.nodeFilter)).length === 0;

    // The agents' reports first, so that no block they hold is claimed for another node.
    const snap = await bus.snapshot([NodeBlocksHeld], {
      stream: IPAM_ALLOCATIONS_STREAM,
      filterSubjects: [IPAM_HELD_FILTER],
    });
    let maxSeq = 0;
    const reported: string[] = [];
    for (const d of snap.values()) {
      maxSeq = Math.max(maxSeq, d.streamSeq);
      const node = this.heldNode(d);
      if (node !== undefined && this.held.apply(node, d.value.blocks, d.streamSeq)) {
        reported.push(node);
      }
    }
    const assigner = new Assigner({
      store,
      config: this.opts.config,
      held: this.held,
      node: (name) => this.nodeView.info(name),
      effects: this.effects(),
      metrics: this.opts.metrics,
      logger,
      now: this.now,
      nodeGraceMs: this.opts.nodeGraceMs,
      orphanGraceMs: this.opts.orphanGraceMs,
    });
    await assigner.load();
    this.assigner = assigner;
    this.opts.metrics.setPoolSource(() => assigner.poolUsage());
    if (emptyBucket && this.opts.rebuildWaitMs > 0) {
      assigner.claimsPaused = true;
      this.rebuildWait = true;
      this.resumeTimer = setTimeout(() => this.resumeClaims(), this.opts.rebuildWaitMs);
      logger.info(
        { waitMs: this.opts.rebuildWaitMs, reported: reported.length },
        'no node records: waiting for node agents to report the blocks they hold before giving out new ones',
      );
    }
    this.heldConsumer = await bus.consume(
      [NodeBlocksHeld],
      {
        stream: IPAM_ALLOCATIONS_STREAM,
        filterSubjects: [IPAM_HELD_FILTER],
        ...(maxSeq > 0 ? { startSeq: maxSeq + 1 } : { deliverPolicy: 'all' as const }),
      },
      (d) => this.onHeld(d),
    );
    // Nodes first, so that a record rebuilt from a report carries its Node's UID.
    await this.nodeView.start(bus);
    this.nodesRead = true;
    for (const node of reported) this.heldReported(node);
    this.resumeIfAllReported();
    this.subs.push(
      bus.serve(GrowRequest, IPAM_GROW_FILTER, (d) => this.grow(d), GrowReply, {
        queue: 'ipam',
        concurrency: this.opts.concurrency,
        subjectCheck: (req, subject) =>
          subjectNode(subject) === req.node
            ? undefined
            : `the request is for node ${req.node}, its subject ${subject} for another`,
      }),
    );
    this.serving = true;
    void this.republishAssignments();
    this.scheduleGc();
    logger.info(
      {
        families: this.opts.config.families.map((l) => ({
          family: l.family,
          maskSize: l.maskSize,
          blocksClaimed: claims.filter((c) => c.family === l.family).length,
        })),
        nodes: this.nodeView.nodes.size,
        heldReports: reported.length,
      },
      'ipam serving',
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.serving = false;
    if (this.gcTimer !== undefined) clearTimeout(this.gcTimer);
    if (this.resumeTimer !== undefined) clearTimeout(this.resumeTimer);
    await Promise.allSettled(this.subs.map((s) => s.stop()));
    await this.heldConsumer?.stop();
    await this.nodeView.stop();
    await this.gcRunning;
  }

  private requireAssigner(): Assigner {
    if (this.assigner === undefined) throw new Error('ipam is not started');
    return this.assigner;
  }

  // ---- inputs ----

  private async grow(
    d: Delivery<PayloadOf<typeof GrowRequest>>,
  ): Promise<PayloadOf<typeof GrowReply>> {
    const { node, sets } = d.value;
    try {
      const r = await this.requireAssigner().grow(node, sets);
      this.opts.metrics.grows.inc({ outcome: r.added ? 'added' : 'current' });
      return { node, blocks: blockList(r.record, this.families) };
    } catch (err) {
      const code =
        err instanceof AssignError
          ? err.code
          : err instanceof StoreError
            ? IpamErrorCode.unavailable
            : undefined;
      if (code === undefined) throw err;
      this.opts.metrics.grows.inc({ outcome: code });
      throw new ReplyError(code, (err as Error).message, { cause: err });
    }
  }

  private onNodeLive(name: string): void {
    if (this.stopped || this.assigner === undefined) return;
    this.resumeIfAllReported();
    this.assigner.announce(name).catch((err: unknown) => {
      // Exhaustion was logged and published where it happened; a paused replica assigns on resume.
      if (err instanceof AssignError && err.code !== IpamErrorCode.unknownNode) return;
      this.opts.logger.warn(
        { err, node: name },
        'could not assign node blocks; retrying on the next node event',
      );
    });
  }

  private heldNode(d: HeldDelivery): string | undefined {
    const node = subjectNode(d.subject);
    if (node === d.value.node) return node;
    this.opts.logger.warn(
      { subject: d.subject, node: d.value.node },
      'held-blocks report for another node than its subject names: ignored',
    );
    return undefined;
  }

  private onHeld(d: HeldDelivery): void {
    const node = this.heldNode(d);
    if (node === undefined || !this.held.apply(node, d.value.blocks, d.streamSeq)) return;
    this.assigner?.repin();
    this.heldReported(node);
  }

  private heldReported(node: string): void {
    if (this.stopped) return;
    this.resumeIfAllReported();
    this.assigner?.heldReported(node).catch((err: unknown) => {
      this.opts.logger.warn({ err, node }, "could not act on a node's held-blocks report");
    });
  }

  /**
   * The rebuild wait ends early once every live node has had its agent's report (and there is
   * one): then no block a running agent holds is still unknown. Waiting out the whole wait is
   * for nodes whose agents are down.
   */
  private resumeIfAllReported(): void {
    // not while the node view reads its snapshot: the nodes seen so far are not all of them
    if (!this.rebuildWait || !this.nodesRead) return;
    const live = [...this.nodeView.nodes].filter(([, n]) => n.live).map(([name]) => name);
    if (live.length > 0 && live.every((name) => this.held.reported(name)))
      this.resumeClaims('every node reported');
  }

  private resumeClaims(why = 'the wait is over'): void {
    const assigner = this.assigner;
    if (this.stopped || assigner === undefined || !this.rebuildWait) return;
    this.rebuildWait = false;
    if (this.resumeTimer !== undefined) clearTimeout(this.resumeTimer);
    assigner.claimsPaused = false;
    this.opts.logger.info({ why }, 'rebuild wait over: giving out blocks again');
    for (const [name, n] of this.nodeView.nodes) if (n.live) this.onNodeLive(name);
  }

  // ---- outputs ----

  private effects(): AssignerEffects {
    const { bus, logger } = this.opts;
    return {
      assigned: (record) => this.publishAssignment(record),
      exhausted: (node, family, message) => {
        logger.warn({ node, family }, message);
        try {
          bus.publish(AddressesExhausted, ipamExhaustedSubject(node), {
            node,
            family,
            scope: 'cluster-pool',
            message,
          });
        } catch (err) {
          logger.error({ err, node }, 'could not publish the exhausted event');
        }
      },
      purgeAllocations: async (node) => {
        await bus.purgeSubjects(IPAM_ALLOCATIONS_STREAM, ipamHeldSubject(node));
        await bus.purgeSubjects(IPAM_ALLOCATIONS_STREAM, ipamAllocFilter(node));
      },
      returned: async (record) => {
        const blocks = blockList(record, this.families);
        await bus
          .jsPublish(
            IpamNodeEvent,
            ipamNodeSubject(record.name),
            { op: 'delete', node: record.name, blocks },
            { ttl: TOMBSTONE_TTL, ceSubject: `node/${record.name}` },
          )
          .catch((err: unknown) =>
            logger.warn({ err, node: record.name }, 'could not publish the node tombstone'),
          );
      },
    };
  }

  /** Never throws: the record is written; a replica's start publishes every record again. */
  private async publishAssignment(record: NodeRecord): Promise<void> {
    const blocks: NodeBlockValue[] = blockList(record, this.families);
    try {
      await this.opts.bus.jsPublish(
        IpamNodeEvent,
        ipamNodeSubject(record.name),
        { op: 'upsert', node: record.name, blocks },
        {
          msgId: `${record.name}@${record.createdAt}:${blocks.map((b) => b.cidr).join(',')}`,
          ceSubject: `node/${record.name}`,
        },
      );
    } catch (err) {
      this.opts.logger.warn({ err, node: record.name }, 'could not publish the node assignment');
    }
  }

  /** At start: what a replica that died between the record write and the publish did not publish. */
  private async republishAssignments(): Promise<void> {
    try {
      for (const record of (await this.requireAssigner().readRecords()).values()) {
        await this.publishAssignment(record);
      }
    } catch (err) {
      this.opts.logger.warn({ err }, 'could not republish the node assignments');
    }
  }

  private async recordConfig(store: IpamStore): Promise<void> {
    const want = clusterConfigRecord(this.opts.config);
    const have = await store.getJson(IpamKey.config);
    if (have !== undefined && JSON.stringify(have.value) === JSON.stringify(want)) return;
    await store.putJson(IpamKey.config, want);
    this.opts.logger.info(
      { previous: have?.value, now: want },
      'cluster IPAM configuration recorded',
    );
  }

  // ---- garbage collection ----

  private scheduleGc(): void {
    if (this.stopped) return;
    // Jitter, so replicas started together do not scan in lockstep.
    const delay = this.opts.gcIntervalMs * (0.75 + Math.random() * 0.5);
    this.gcTimer = setTimeout(() => {
      this.gcRunning = this.gcPass()
        .catch((err: unknown) => {
          this.opts.metrics.gcRuns.inc({ outcome: 'failed' });
          this.opts.logger.warn({ err }, 'GC pass failed');
        })
        .finally(() => {
          this.gcRunning = undefined;
          this.scheduleGc();
        });
    }, delay);
  }

  /** One pass: held reports read afresh, deleted nodes' blocks returned, orphan claims removed. */
  async gcPass(): Promise<void> {
    const t0 = performance.now();
    if (this.nodeView.nodes.size === 0) {
      // An empty view means kube-bridge has published nothing yet: every node would look gone.
      this.opts.metrics.gcRuns.inc({ outcome: 'skipped' });
      return;
    }
    // Reports purged from the stream (deleted nodes', by any replica) are no messages: a fresh
    // read is how this replica stops pinning their blocks.
    const mark = this.held.mark();
    const snap = await this.opts.bus.snapshot([NodeBlocksHeld], {
      stream: IPAM_ALLOCATIONS_STREAM,
      filterSubjects: [IPAM_HELD_FILTER],
    });
    const fresh = new Map<string, { blocks: NodeBlockValue[]; seq: number }>();
    for (const d of snap.values()) {
      const node = this.heldNode(d);
      if (node !== undefined) fresh.set(node, { blocks: d.value.blocks, seq: d.streamSeq });
    }
    this.held.refresh(mark, fresh);
    const assigner = this.requireAssigner();
    assigner.repin();
    const summary = await assigner.gcPass(this.nodeView);
    this.opts.metrics.gcRuns.inc({ outcome: 'ok' });
    if (summary.releasedNodes + summary.releasedOrphanBlocks > 0) {
      const event = { ...summary, durationMs: performance.now() - t0 };
      try {
        this.opts.bus.publish(GcCompleted, ipamEventSubject(IpamEventKind.gc), event);
      } catch (err) {
        this.opts.logger.error({ err }, 'could not publish the GC event');
      }
    }
  }
}
