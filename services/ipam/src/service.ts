import { randomBytes } from 'node:crypto';
import type { Bus, BusLogger, BusSubscription, Delivery } from '@dyad/bus';
import { ReplyError } from '@dyad/bus';
import type { Family, NodeObject, PayloadOf } from '@dyad/contracts';
import {
  AddressesAllocated,
  AddressesExhausted,
  AddressesReleased,
  AllocateRequest,
  Allocation,
  DeadLetterStream,
  GcCompleted,
  IPAM_KV_BUCKET,
  IpamErrorCode,
  IpamEventKind,
  IpamKey,
  IpamKvBucket,
  IpamNodeEvent,
  IpamNodesStream,
  IpamOwnerRecord,
  IpamSlotRecord,
  IpamSubject,
  K8sStream,
  ReleaseRequest,
  ReleaseResult,
  ipamEventSubject,
  ipamNodeSubject,
} from '@dyad/contracts';
import type { AllocateOutcome, Held, ReleaseOutcome } from './allocator.ts';
import { AllocationError, Allocator } from './allocator.ts';
import type { ClaimedBlock } from './blocks.ts';
import { BlockClaimer } from './blocks.ts';
import { clusterConfigRecord, compatibilityProblems } from './compat.ts';
import type { IpamConfig } from './config.ts';
import { ConfigKey } from './config.ts';
import { IpamConfigConflictError, StoreError } from './errors.ts';
import type { BlockClaim, MissSince, SlotView } from './gc.ts';
import { firstSeen, forgetUnseen, planNodeGc, planOrphanBlocks, planPodGc } from './gc.ts';
import { NodeView, readPods } from './k8s-view.ts';
import type { AddressUsage, IpamMetrics } from './metrics.ts';
import type { NodeRecord } from './record.ts';
import { addBlocks, orderedAddresses, slotCapacity } from './record.ts';
import {
  IpamStore,
  containerIdOfOwnerKey,
  decodeJson,
  ownerFilter,
  parseBlockKey,
  parseSlotKey,
} from './store.ts';
import { IpamTable, snapshotSlots } from './table.ts';

export interface IpamServiceOptions {
  readonly bus: Bus;
  readonly config: IpamConfig;
  readonly logger: BusLogger;
  readonly metrics: IpamMetrics;
  /** A pod deleted or finished this long (and allocated longer ago) has its addresses released. */
  readonly podGraceMs: number;
  /** The same for a pod kube-bridge never showed (or whose tombstone expired). */
  readonly absentPodGraceMs: number;
  /** A node deleted this long has its record removed and its blocks returned to the pool. */
  readonly nodeGraceMs: number;
  /** A block claim no node record uses is removed after this long. */
  readonly orphanGraceMs: number;
  readonly gcIntervalMs: number;
  /** Requests handled at once by this replica. */
  readonly concurrency: number;
  readonly now?: () => number;
}

/** Released owner records are kept this long, so a repeated release is answered `alreadyReleased`. */
const RELEASED_TTL_MS = 3600_000;
const READ_CONCURRENCY = 16;
const TOMBSTONE_TTL = '24h';
/** Markers untouched this long belong to replicas that are gone (a live one just writes again). */
const SYNC_MARKER_TTL_MS = 24 * 3600_000;
/** Owner records are scanned (one read each) every this many GC passes. */
const OWNER_SCAN_EVERY = 5;

/**
 * One ipam replica: answers allocate/release requests in the `ipam` queue group, assigns node
 * blocks when kube-bridge announces nodes, and garbage-collects. Replicas share nothing but the
 * bucket, and any number of them may serve the same node at the same time.
 */
export class IpamService {
  private readonly opts: IpamServiceOptions;
  private readonly now: () => number;
  private readonly families: readonly Family[];
  private readonly replicaId = randomBytes(6).toString('hex');
  private readonly claimers = new Map<Family, BlockClaimer>();
  private readonly ensuring = new Map<string, Promise<NodeRecord | undefined>>();
  private readonly nodeView: NodeView;
  private readonly table: IpamTable;
  private readonly missedPods: MissSince = new Map();
  private readonly missedNodes: MissSince = new Map();
  /** Slot claims (key@revision) whose owner was seen pointing at them: not orphans. */
  private readonly verified = new Set<string>();
  /** Slot claims (key@revision) seen orphaned, with when this replica first saw them so. */
  private readonly orphanSince: MissSince = new Map();
  /** Owner records (key@revision) seen pointing at a slot they do not hold, likewise. */
  private readonly strayOwnerSince: MissSince = new Map();
  private readonly subs: BusSubscription[] = [];
  private store: IpamStore | undefined;
  private allocator: Allocator | undefined;
  private gcTimer: NodeJS.Timeout | undefined;
  private gcRunning: Promise<void> | undefined;
  private gcPasses = 0;
  private stopped = false;
  private serving = false;

  constructor(opts: IpamServiceOptions) {
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    this.families = opts.config.families.map((l) => l.family);
    this.nodeView = new NodeView((name, node) => this.onNodeLive(name, node));
    this.table = new IpamTable(this.now);
    opts.metrics.setAddressSource(() => this.usage());
  }

  /** Serving, connected, and following the bucket (a replica whose watch is down is not ready). */
  get ready(): boolean {
    return this.serving && this.opts.bus.isConnected() && this.table.following;
  }

  async start(): Promise<void> {
    const { bus, logger } = this.opts;
    await bus.ensureStreams([K8sStream, DeadLetterStream, IpamNodesStream]);
    await bus.ensureKv([IpamKvBucket]);
    const kv = await bus.kv(IPAM_KV_BUCKET);
    const store = new IpamStore(kv, bus.kvWriter(IPAM_KV_BUCKET));
    this.store = store;

    const keys = await store.keys(`${IpamKey.blockPrefix}>`);
    const claims = keys.flatMap((k) => {
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
    for (const layout of this.opts.config.families) {
      const c = new BlockClaimer(layout, store, this.now);
      for (const k of keys) c.noteKey(k);
      this.claimers.set(layout.family, c);
    }

    await this.table.start(kv, (err) =>
      logger.error({ err }, 'the KV watch failed; opening it again'),
    );
    await this.sync();
    this.allocator = new Allocator(
      store,
      this.table,
      () => this.sync(),
      this.now,
      (key) => this.opts.metrics.conflicts.inc({ key }),
    );

    await this.nodeView.start(bus);
    const concurrency = this.opts.concurrency;
    this.subs.push(
      bus.serve(AllocateRequest, IpamSubject.allocate, (d) => this.allocate(d), Allocation, {
        queue: 'ipam',
        concurrency,
      }),
      bus.serve(ReleaseRequest, IpamSubject.release, (d) => this.release(d), ReleaseResult, {
        queue: 'ipam',
        concurrency,
      }),
    );
    this.serving = true;
    void this.republishAssignments();
    this.scheduleGc();
    logger.info(
      {
        replica: this.replicaId,
        families: this.opts.config.families.map((l) => ({
          family: l.family,
          maskSize: l.maskSize,
          blocksClaimed: claims.filter((c) => c.family === l.family).length,
        })),
        nodes: this.nodeView.nodes.size,
      },
      'ipam serving',
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.serving = false;
    if (this.gcTimer !== undefined) clearTimeout(this.gcTimer);
    await Promise.allSettled(this.subs.map((s) => s.stop()));
    await this.nodeView.stop();
    await this.gcRunning;
    this.table.stop();
  }

  private sync(): Promise<void> {
    return this.table.sync(this.requireStore().kv, this.replicaId);
  }

  // ---- requests ----

  private async allocate(
    d: Delivery<PayloadOf<typeof AllocateRequest>>,
  ): Promise<PayloadOf<typeof Allocation>> {
    const req = d.value;
    const families = this.requestedFamilies(req.families);
    const status = this.nodeView.status(req.node);
    if (status === 'deleted') {
      this.opts.metrics.allocations.inc({ outcome: IpamErrorCode.unknownNode });
      throw new ReplyError(IpamErrorCode.unknownNode, `node ${req.node} has been deleted`);
    }
    let record = await this.nodeRecord(req.node);
    if (record === undefined && status !== 'live') {
      this.opts.metrics.allocations.inc({ outcome: IpamErrorCode.unknownNode });
      throw new ReplyError(
        IpamErrorCode.unknownNode,
        `node ${req.node} is unknown: kube-bridge has not announced it`,
      );
    }
    if (record === undefined || families.some((f) => record?.blocks[f] === undefined)) {
      record = await this.guard(
        this.ensureNode(req.node, this.nodeView.nodes.get(req.node)?.uid ?? record?.uid ?? ''),
      );
      let lacking = families.find((f) => record?.blocks[f] === undefined);
      if (lacking !== undefined) {
        // Before answering that no block is left, read the record itself: another replica may
        // have given the node its block while this one found the pool empty.
        const cur = await this.guard(this.requireStore().node(req.node));
        if (cur.present) {
          this.table.noteNode(req.node, cur.value, cur.revision);
          record = cur.value;
          lacking = families.find((f) => cur.value.blocks[f] === undefined);
          if (lacking === undefined) {
            this.opts.logger.warn({ node: req.node }, 'node blocks found on a second read');
          }
        }
      }
      if (lacking !== undefined) {
        const message = `no ${lacking} block left for node ${req.node} in ${this.cidrKey(lacking)}`;
        this.opts.metrics.allocations.inc({ outcome: IpamErrorCode.exhausted });
        throw new ReplyError(IpamErrorCode.exhausted, message);
      }
    }
    if (record === undefined)
      throw new ReplyError(IpamErrorCode.unknownNode, `node ${req.node} has no blocks`);
    let out: AllocateOutcome;
    try {
      out = await this.guard(
        this.requireAllocator().allocate({
          node: req.node,
          namespace: req.namespace,
          pod: req.pod,
          podUid: req.podUid,
          containerId: req.containerId,
          families,
          blocks: record.blocks,
        }),
      );
    } catch (err) {
      if (err instanceof ReplyError) {
        this.opts.metrics.allocations.inc({ outcome: err.code });
        if (err.code === IpamErrorCode.exhausted && err.cause instanceof AllocationError) {
          const f = err.cause.family ?? families[0] ?? 'IPv4';
          this.exhausted(req.node, f, 'node-block', err.message);
        }
      }
      throw err;
    }
    this.opts.metrics.allocations.inc({ outcome: out.created ? 'new' : 'repeat' });
    const addresses = orderedAddresses(out.record.ips, this.families)
      .filter((a) => families.includes(a.family))
      .map((a) => {
        const b = record.blocks[a.family];
        if (b === undefined) throw new Error(`node ${req.node} lost its ${a.family} block`);
        return { ...a, cidr: b.cidr, gateway: b.gateway };
      });
    const allocatedAt = new Date(out.record.at).toISOString();
    if (out.created) {
      const fields = this.heldFields(out);
      this.emit(IpamEventKind.allocated, (bus, s) =>
        bus.publish(AddressesAllocated, s, { ...fields, allocatedAt }),
      );
    }
    return {
      node: req.node,
      namespace: out.record.namespace,
      pod: out.record.pod,
      podUid: out.record.podUid,
      containerId: out.record.containerId,
      addresses,
      allocatedAt,
    };
  }

  private async release(
    d: Delivery<PayloadOf<typeof ReleaseRequest>>,
  ): Promise<PayloadOf<typeof ReleaseResult>> {
    const req = d.value;
    const record = await this.nodeRecord(req.node);
    if (record === undefined) {
      if (this.nodeView.status(req.node) === 'live') {
        throw new ReplyError(
          IpamErrorCode.notAllocated,
          `nothing is allocated on node ${req.node}`,
        );
      }
      throw new ReplyError(IpamErrorCode.unknownNode, `node ${req.node} is unknown`);
    }
    const allocator = this.requireAllocator();
    let r: ReleaseOutcome;
    if (req.containerId !== undefined) {
      r = await this.guard(allocator.releaseContainer(req.node, req.containerId));
      if (r.kind === 'released' && req.podUid !== undefined) {
        r = { kind: 'released', held: r.held.filter((h) => h.record.podUid === req.podUid) };
      }
    } else {
      r = await this.guard(allocator.releasePod(req.node, req.podUid ?? ''));
    }
    if (r.kind === 'not-allocated') {
      const what =
        req.containerId !== undefined
          ? `container ${req.containerId}`
          : `pod UID ${req.podUid ?? ''}`;
      throw new ReplyError(
        IpamErrorCode.notAllocated,
        `nothing is allocated on node ${req.node} to ${what}`,
      );
    }
    const held = r.kind === 'released' ? r.held : [];
    for (const h of held) {
      this.opts.metrics.releases.inc({ reason: 'request' });
      const fields = this.heldFields(h);
      this.emit(IpamEventKind.released, (bus, s) =>
        bus.publish(AddressesReleased, s, { ...fields, reason: 'request' }),
      );
    }
    return {
      node: req.node,
      released: held.map((h) => this.heldFields(h)),
      alreadyReleased: r.kind === 'already',
    };
  }

  /** Store failures become `unavailable`, allocation refusals their own code. */
  private async guard<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (err) {
      if (err instanceof AllocationError)
        throw new ReplyError(err.code, err.message, { cause: err });
      if (err instanceof StoreError) {
        throw new ReplyError(IpamErrorCode.unavailable, err.message, { cause: err });
      }
      throw err;
    }
  }

  private requestedFamilies(wanted: readonly Family[] | undefined): Family[] {
    if (wanted === undefined) return [...this.families];
    for (const f of wanted) {
      if (!this.families.includes(f)) {
        this.opts.metrics.allocations.inc({ outcome: IpamErrorCode.familyDisabled });
        const key = f === 'IPv4' ? ConfigKey.enableIPv4 : ConfigKey.enableIPv6;
        throw new ReplyError(
          IpamErrorCode.familyDisabled,
          `${f} is disabled in this cluster (${key} is false)`,
        );
      }
    }
    return this.families.filter((f) => wanted.includes(f));
  }

  private heldFields(h: Held) {
    return {
      node: h.node,
      namespace: h.record.namespace,
      pod: h.record.pod,
      podUid: h.record.podUid,
      containerId: h.record.containerId,
      addresses: orderedAddresses(h.record.ips, this.families),
    };
  }

  private cidrKey(f: Family): string {
    return f === 'IPv4' ? ConfigKey.v4Cidr : ConfigKey.v6Cidr;
  }

  private exhausted(
    node: string,
    family: Family,
    scope: 'node-block' | 'cluster-pool',
    message: string,
  ): void {
    this.opts.metrics.exhausted.inc({ family, scope });
    this.opts.logger.warn({ node, family, scope }, message);
    this.emit(IpamEventKind.exhausted, (bus, s) =>
      bus.publish(AddressesExhausted, s, { node, family, scope, message }),
    );
  }

  /** Events are fire-and-forget: one that cannot be sent must not fail the request. */
  private emit(kind: IpamEventKind, send: (bus: Bus, subject: string) => void): void {
    try {
      send(this.opts.bus, ipamEventSubject(kind));
    } catch (err) {
      this.opts.logger.error({ err, kind }, 'could not publish an ipam event');
    }
  }

  /** Used and free pod addresses per node and family, from the watch: for the gauge. */
  private *usage(): Generator<AddressUsage> {
    for (const [node, { record }] of this.table.nodes) {
      const cap = slotCapacity(record.blocks);
      const used = this.table.used(node, cap);
      for (const f of ['IPv4', 'IPv6'] as const) {
        if (record.blocks[f] !== undefined) yield { node, family: f, used, free: cap - used };
      }
    }
  }

  // ---- node records ----

  /** The node's record as the watch last told, else as stored. */
  private async nodeRecord(name: string): Promise<NodeRecord | undefined> {
    const cached = this.table.nodes.get(name);
    if (cached !== undefined) return cached.record;
    const cur = await this.guard(this.requireStore().node(name));
    if (!cur.present) return undefined;
    this.table.noteNode(name, cur.value, cur.revision);
    return cur.value;
  }

  private onNodeLive(name: string, node: NodeObject): void {
    if (this.stopped) return;
    void this.ensureNode(name, node.metadata.uid).catch((err: unknown) => {
      this.opts.logger.warn(
        { err, node: name },
        'could not assign node blocks; retrying on the next request or event',
      );
    });
  }

  /** Gives a node one block per enabled family it lacks; one attempt at a time per node here. */
  private ensureNode(name: string, uid: string): Promise<NodeRecord | undefined> {
    let p = this.ensuring.get(name);
    if (p === undefined) {
      p = this.assignBlocks(name, uid).finally(() => this.ensuring.delete(name));
      this.ensuring.set(name, p);
    }
    return p;
  }

  private async assignBlocks(name: string, uid: string): Promise<NodeRecord | undefined> {
    const store = this.requireStore();
    // Node events repeat (every status change): a node the watch shows complete costs nothing.
    const known = this.table.nodes.get(name)?.record;
    if (known !== undefined && this.families.every((f) => known.blocks[f] !== undefined)) {
      return known;
    }
    let cur = await store.node(name);
    const missing = this.families.filter((f) => !cur.present || cur.value.blocks[f] === undefined);
    if (missing.length === 0) {
      if (cur.present) this.table.noteNode(name, cur.value, cur.revision);
      return cur.present ? cur.value : undefined;
    }
    const claims: ClaimedBlock[] = [];
    await Promise.all(
      missing.map(async (f) => {
        const c = await this.claimers.get(f)?.claim(name);
        if (c === undefined) {
          this.opts.metrics.nodeBlocks.inc({ family: f, outcome: 'exhausted' });
          this.exhausted(
            name,
            f,
            'cluster-pool',
            `no free ${f} block for node ${name} in ${this.cidrKey(f)}`,
          );
          return;
        }
        this.opts.metrics.nodeBlocks.inc({ family: f, outcome: 'claimed' });
        claims.push(c);
      }),
    );
    // A claim older than half the orphan grace may already look orphaned to a GC: give it back
    // rather than write a record that uses it (only a stall of minutes gets here).
    const offer: Partial<Record<Family, { cidr: string; gateway: string }>> = {};
    for (const c of claims) {
      if (this.now() - c.at < this.opts.orphanGraceMs / 2)
        offer[c.family] = { cidr: c.cidr, gateway: c.gateway };
    }
    let added: Family[] = [];
    let record: NodeRecord | undefined = cur.present ? cur.value : undefined;
    try {
      for (let round = 0; round < 16 && Object.keys(offer).length > 0; round++) {
        const next = addBlocks(cur.present ? cur.value : undefined, name, uid, offer, this.now());
        if (next.added.length === 0) {
          record = next.record;
          break;
        }
        const w = await store.writeIf(IpamKey.node(name), next.record, cur.revision);
        if (w === 'conflict') {
          cur = await store.node(name);
          continue;
        }
        this.table.noteNode(name, next.record, w);
        record = next.record;
        added = next.added;
        break;
      }
    } finally {
      for (const c of claims) {
        if (added.includes(c.family)) continue;
        // Another replica gave the node a block first, or the write failed: withdraw ours.
        this.opts.metrics.nodeBlocks.inc({ family: c.family, outcome: 'lost' });
        await store.deleteIf(c.key, c.revision).catch((err: unknown) => {
          this.opts.logger.warn({ err, key: c.key }, 'could not withdraw a block claim; GC will');
        });
        this.claimers.get(c.family)?.forget(c.cidr);
      }
    }
    if (added.length > 0 && record !== undefined) {
      this.opts.logger.info({ node: name, blocks: record.blocks }, 'node blocks assigned');
      await this.publishAssignment(record);
    }
    return record;
  }

  private async publishAssignment(record: NodeRecord): Promise<void> {
    const blocks = this.blockList(record);
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

  private blockList(record: NodeRecord): { family: Family; cidr: string; gateway: string }[] {
    const order = [
      ...this.families,
      ...(['IPv4', 'IPv6'] as const).filter((f) => !this.families.includes(f)),
    ];
    return order.flatMap((f) => {
      const b = record.blocks[f];
      return b === undefined ? [] : [{ family: f, cidr: b.cidr, gateway: b.gateway }];
    });
  }

  /** At start: what a replica that died between the record write and the publish did not publish. */
  private async republishAssignments(): Promise<void> {
    for (const { record } of [...this.table.nodes.values()]) {
      await this.publishAssignment(record);
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

  private requireStore(): IpamStore {
    if (this.store === undefined) throw new Error('ipam is not started');
    return this.store;
  }

  private requireAllocator(): Allocator {
    if (this.allocator === undefined) throw new Error('ipam is not started');
    return this.allocator;
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

  /** One pass: slots of gone pods, orphan slots and owners, deleted nodes, orphan block claims. */
  async gcPass(): Promise<void> {
    const t0 = performance.now();
    const store = this.requireStore();
    if (this.nodeView.nodes.size === 0) {
      // An empty view means kube-bridge has published nothing yet: judging pods gone now
      // would free everything.
      this.opts.metrics.gcRuns.inc({ outcome: 'skipped' });
      return;
    }
    this.gcPasses++;
    const pods = await readPods(this.opts.bus);
    const slots = await this.slotViews();
    const now = this.now();
    let releasedOwners = 0;
    let releasedNodes = 0;
    let releasedOrphanBlocks = 0;
    const allocator = this.requireAllocator();

    for (const s of planPodGc(
      slots,
      pods,
      this.missedPods,
      now,
      this.opts.podGraceMs,
      this.opts.absentPodGraceMs,
    )) {
      if (!(await allocator.releaseGone(s.node, s.slot, s.rev, s.record))) continue;
      releasedOwners++;
      this.opts.metrics.releases.inc({ reason: 'pod-deleted' });
      const fields = this.heldFields(s);
      this.emit(IpamEventKind.released, (bus, subj) =>
        bus.publish(AddressesReleased, subj, { ...fields, reason: 'pod-deleted' }),
      );
    }
    await this.collectOrphanSlots(slots, now);
    if (this.gcPasses % OWNER_SCAN_EVERY === 1) await this.collectOwners(now);

    const records = new Map([...this.table.nodes].map(([n, e]) => [n, e.record]));
    for (const c of planNodeGc(
      [...records.values()],
      this.nodeView,
      this.missedNodes,
      now,
      this.opts.nodeGraceMs,
    )) {
      const record = records.get(c.node);
      if (record === undefined || !(await this.deleteNode(record))) continue;
      releasedNodes++;
      records.delete(c.node);
    }

    const claims: BlockClaim[] = [];
    await forEachLimited(
      await store.keys(`${IpamKey.blockPrefix}>`),
      READ_CONCURRENCY,
      async (key) => {
        const b = parseBlockKey(key);
        const claim = b === undefined ? undefined : await store.blockClaim(key);
        if (b === undefined || claim === undefined || !claim.present) return;
        claims.push({
          key,
          family: b.family,
          cidr: b.cidr,
          node: claim.value.node,
          at: claim.value.at,
          revision: claim.revision,
        });
      },
    );
    for (const c of planOrphanBlocks(claims, records, now, this.opts.orphanGraceMs)) {
      // Look again right before: the record may have been written since the scan.
      const current = await store.node(c.node);
      if (current.present && current.value.blocks[c.family]?.cidr === c.cidr) continue;
      if (await store.deleteIf(c.key, c.revision)) {
        releasedOrphanBlocks++;
        this.opts.metrics.nodeBlocks.inc({ family: c.family, outcome: 'released' });
        this.claimers.get(c.family)?.forget(c.cidr);
        this.opts.logger.info({ key: c.key, node: c.node }, 'orphan block claim removed');
      }
    }

    this.opts.metrics.gcRuns.inc({ outcome: 'ok' });
    if (releasedOwners + releasedNodes + releasedOrphanBlocks > 0) {
      const summary = {
        releasedOwners,
        releasedNodes,
        releasedOrphanBlocks,
        scannedNodes: records.size,
        durationMs: performance.now() - t0,
      };
      this.emit(IpamEventKind.gc, (bus, s) => bus.publish(GcCompleted, s, summary));
    }
  }

  /** Every slot claim with what it holds, read from the bucket now. */
  private async slotViews(): Promise<SlotView[]> {
    const out: SlotView[] = [];
    const kv = this.requireStore().kv;
    for (const e of await snapshotSlots(kv, IpamKey.sync(`${this.replicaId}-gc`))) {
      const k = parseSlotKey(e.key);
      if (k === undefined) continue;
      try {
        out.push({ ...k, rev: e.revision, record: decodeJson(IpamSlotRecord, e.key, e.value) });
      } catch (err) {
        this.opts.logger.warn({ err, key: e.key }, 'slot claim does not decode; left alone');
      }
    }
    return out;
  }

  /**
   * A slot whose owner does not point at it, seen so by this replica for the pod grace period: a
   * claim a lost race or a dead replica left behind. The age is this replica's own observation,
   * not the record's `at`, which is the writer's clock: one path claims a slot just before it
   * points the owner at it, and a writer whose clock is behind would make that claim look old
   * in that instant. Each claim is checked until its owner is seen pointing at it; from then on
   * it stays its owner's until released.
   */
  private async collectOrphanSlots(slots: readonly SlotView[], now: number): Promise<void> {
    const store = this.requireStore();
    const id = (s: SlotView): string => `${s.node}/${s.slot}@${s.rev}`;
    // Claims young by their writer's clock are left for later: most are, and none is an orphan
    // for long.
    const todo = slots.filter(
      (s) => now - s.record.at >= this.opts.podGraceMs && !this.verified.has(id(s)),
    );
    const suspects = new Set<string>();
    await forEachLimited(todo, READ_CONCURRENCY, async (s) => {
      const ow = await store.owner(s.node, s.record.containerId);
      if (ow.present && ow.value.released === undefined && ow.value.slot === s.slot) {
        this.verified.add(id(s));
        return;
      }
      suspects.add(id(s));
      if (now - firstSeen(this.orphanSince, id(s), now) < this.opts.podGraceMs) return;
      if (await store.deleteIf(IpamKey.slot(s.node, s.slot), s.rev)) {
        this.table.noteSlot(s.node, s.slot, -1, false);
        this.opts.metrics.releases.inc({ reason: 'orphan' });
        this.opts.logger.info(
          { node: s.node, slot: s.slot, containerId: s.record.containerId },
          'orphan slot claim removed',
        );
      }
    });
    forgetUnseen(this.orphanSince, suspects);
    if (this.verified.size > 4 * (slots.length + 1024)) this.verified.clear();
  }

  /**
   * Owner records released long ago, or seen by this replica pointing at a slot they do not hold
   * for the grace period (a release or GC frees the slot just before it marks the owner, and
   * `at`, the writer's clock, cannot say how long the owner has pointed there); and the sync
   * markers of replicas gone for a day.
   */
  private async collectOwners(now: number): Promise<void> {
    const store = this.requireStore();
    for (const key of await store.keys(`${IpamKey.syncPrefix}>`)) {
      const e = await store.getJson(key);
      if (e !== undefined && now - Number(e.value) > SYNC_MARKER_TTL_MS) {
        await store.purgeIf(key, e.revision);
      }
    }
    const keys = await store.keys(`${IpamKey.ownerPrefix}>`);
    const suspects = new Set<string>();
    await forEachLimited(keys, READ_CONCURRENCY, async (key) => {
      const ow = await store.read(IpamOwnerRecord, key);
      if (!ow.present) return;
      const o = ow.value;
      if (o.released !== undefined) {
        if (now - o.released >= RELEASED_TTL_MS) await store.purgeIf(key, ow.revision);
        return;
      }
      if (now - o.at < this.opts.podGraceMs) return;
      const node = key.slice(IpamKey.ownerPrefix.length, key.lastIndexOf('.'));
      const cid = containerIdOfOwnerKey(node, key);
      const sl = await store.slot(node, o.slot);
      if (sl.present && sl.value.containerId === cid) return;
      const id = `${key}@${ow.revision}`;
      suspects.add(id);
      if (now - firstSeen(this.strayOwnerSince, id, now) >= this.opts.podGraceMs) {
        await store.purgeIf(key, ow.revision);
      }
    });
    forgetUnseen(this.strayOwnerSince, suspects);
  }

  /** Frees everything of a deleted node, its record last, so no slot outlives the record. */
  private async deleteNode(record: NodeRecord): Promise<boolean> {
    const store = this.requireStore();
    const name = record.name;
    const cur = await store.node(name);
    if (!cur.present || cur.value.createdAt !== record.createdAt) return false;
    const sweepSlots = async (): Promise<void> => {
      for (const key of await store.keys(`${IpamKey.slotPrefix}${name}.*`)) {
        const sl = await store.read(IpamSlotRecord, key);
        if (!sl.present || !(await store.purgeIf(key, sl.revision))) continue;
        this.opts.metrics.releases.inc({ reason: 'node-deleted' });
        const fields = this.heldFields({ node: name, slot: 0, record: sl.value });
        this.emit(IpamEventKind.released, (bus, s) =>
          bus.publish(AddressesReleased, s, { ...fields, reason: 'node-deleted' }),
        );
      }
    };
    await sweepSlots();
    for (const key of await store.keys(ownerFilter(name))) {
      const ow = await store.read(IpamOwnerRecord, key);
      if (ow.present) await store.purgeIf(key, ow.revision);
    }
    if (!(await store.purgeIf(IpamKey.node(name), cur.revision))) return false;
    // A request that raced the deletion may have claimed a slot meanwhile.
    await sweepSlots();
    for (const f of ['IPv4', 'IPv6'] as const) {
      const b = record.blocks[f];
      if (b === undefined) continue;
      const key = IpamKey.block(f, b.cidr);
      const claim = await store.blockClaim(key);
      if (
        claim.present &&
        claim.value.node === name &&
        (await store.deleteIf(key, claim.revision))
      ) {
        this.opts.metrics.nodeBlocks.inc({ family: f, outcome: 'released' });
        this.claimers.get(f)?.forget(b.cidr);
      }
    }
    await this.opts.bus
      .jsPublish(
        IpamNodeEvent,
        ipamNodeSubject(name),
        { op: 'delete', node: name, blocks: this.blockList(record) },
        { ttl: TOMBSTONE_TTL, ceSubject: `node/${name}` },
      )
      .catch((err: unknown) =>
        this.opts.logger.warn({ err, node: name }, 'could not publish the node tombstone'),
      );
    this.opts.logger.info(
      { node: name, blocks: record.blocks },
      'deleted node: blocks returned to the pool',
    );
    return true;
  }
}

async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const item = items[next++] as T;
        await fn(item);
      }
    }),
  );
}
