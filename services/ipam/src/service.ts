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
  IpamSubject,
  K8sStream,
  ReleaseRequest,
  ReleaseResult,
  ipamEventSubject,
  ipamNodeSubject,
} from '@dyad/contracts';
import type { ClaimedBlock } from './blocks.ts';
import { BlockClaimer } from './blocks.ts';
import { clusterConfigRecord, compatibilityProblems } from './compat.ts';
import type { IpamConfig } from './config.ts';
import { ConfigKey } from './config.ts';
import { IpamConfigConflictError, StoreError } from './errors.ts';
import type { BlockClaim, MissSince } from './gc.ts';
import { planNodeGc, planOrphanBlocks, planPodGc } from './gc.ts';
import { NodeView, readPods } from './k8s-view.ts';
import type { IpamMetrics } from './metrics.ts';
import { NodeQueue } from './node-queue.ts';
import type { ApplyContext, NodeRecord, Op, OpResult, Owner, RecordIndex } from './record.ts';
import { indexRecord, orderedAddresses, usage } from './record.ts';
import { IpamStore, parseBlockKey } from './store.ts';

export interface IpamServiceOptions {
  readonly bus: Bus;
  readonly config: IpamConfig;
  readonly logger: BusLogger;
  readonly metrics: IpamMetrics;
  /** A pod gone this long (and allocated longer ago) has its addresses released by GC. */
  readonly podGraceMs: number;
  /** A node deleted this long has its record removed and its blocks returned to the pool. */
  readonly nodeGraceMs: number;
  /** A block claim no node record uses is removed after this long. */
  readonly orphanGraceMs: number;
  readonly gcIntervalMs: number;
  /** Requests handled at once by this replica. */
  readonly concurrency: number;
  readonly now?: () => number;
}

const RELEASED_TTL_MS = 3600_000;
const RELEASED_MAX = 1024;
const READ_CONCURRENCY = 16;
const TOMBSTONE_TTL = '24h';

/**
 * One ipam replica: answers allocate/release requests in the `ipam` queue group, assigns node
 * blocks when kube-bridge announces nodes, and garbage-collects. Replicas share nothing but the
 * bucket, and any number of them may serve the same node at the same time.
 */
export class IpamService {
  private readonly opts: IpamServiceOptions;
  private readonly now: () => number;
  private readonly families: readonly Family[];
  private readonly queues = new Map<string, NodeQueue>();
  private readonly claimers = new Map<Family, BlockClaimer>();
  private readonly ensuring = new Map<string, Promise<NodeRecord | undefined>>();
  private readonly nodeView: NodeView;
  private readonly missedPods: MissSince = new Map();
  private readonly missedNodes: MissSince = new Map();
  private readonly subs: BusSubscription[] = [];
  private store: IpamStore | undefined;
  private gcTimer: NodeJS.Timeout | undefined;
  private gcRunning: Promise<void> | undefined;
  private stopped = false;
  private serving = false;

  constructor(opts: IpamServiceOptions) {
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    this.families = opts.config.families.map((l) => l.family);
    this.nodeView = new NodeView((name, node) => this.onNodeLive(name, node));
  }

  get ready(): boolean {
    return this.serving && this.opts.bus.isConnected();
  }

  async start(): Promise<void> {
    const { bus, logger } = this.opts;
    await bus.ensureStreams([K8sStream, DeadLetterStream, IpamNodesStream]);
    await bus.ensureKv([IpamKvBucket]);
    const store = new IpamStore(await bus.kv(IPAM_KV_BUCKET));
    this.store = store;

    const keys = await store.blockKeys();
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
    const op: Op = {
      kind: 'allocate',
      containerId: req.containerId,
      namespace: req.namespace,
      pod: req.pod,
      podUid: req.podUid,
      families,
    };
    let r = await this.submit(req.node, op);
    if (r.kind === 'error' && (r.reason === 'no-record' || r.reason === 'no-block')) {
      if (r.reason === 'no-record' && status !== 'live') {
        this.opts.metrics.allocations.inc({ outcome: IpamErrorCode.unknownNode });
        throw new ReplyError(
          IpamErrorCode.unknownNode,
          `node ${req.node} is unknown: kube-bridge has not announced it`,
        );
      }
      await this.ensureNode(req.node, this.nodeView.nodes.get(req.node)?.uid ?? '');
      r = await this.submit(req.node, op);
      if (r.kind === 'error' && r.reason === 'no-block' && r.family !== undefined) {
        this.exhausted(
          req.node,
          r.family,
          'cluster-pool',
          `no ${r.family} block left for node ${req.node} in ${this.cidrKey(r.family)}`,
        );
      }
    }
    if (r.kind === 'error') {
      if (
        r.code === IpamErrorCode.exhausted &&
        r.family !== undefined &&
        r.reason === 'node-block'
      ) {
        this.exhausted(req.node, r.family, 'node-block', r.message);
      }
      this.opts.metrics.allocations.inc({ outcome: r.code });
      throw new ReplyError(r.code, r.message);
    }
    if (r.kind !== 'allocated') throw new Error(`unexpected result ${r.kind} for allocate`);
    const { owner, blocks, created } = r;
    this.opts.metrics.allocations.inc({ outcome: created ? 'new' : 'repeat' });
    const addresses = orderedAddresses(owner.pod, this.families)
      .filter((a) => families.includes(a.family))
      .map((a) => {
        const b = blocks[a.family];
        if (b === undefined) throw new Error(`node ${req.node} lost its ${a.family} block`);
        return { ...a, cidr: b.cidr, gateway: b.gateway };
      });
    const allocatedAt = new Date(owner.pod.at).toISOString();
    if (created) {
      const fields = this.ownerFields(req.node, owner);
      this.emit(IpamEventKind.allocated, (bus, s) =>
        bus.publish(AddressesAllocated, s, { ...fields, allocatedAt }),
      );
    }
    return {
      node: req.node,
      namespace: owner.pod.namespace,
      pod: owner.pod.pod,
      podUid: owner.pod.podUid,
      containerId: owner.containerId,
      addresses,
      allocatedAt,
    };
  }

  private async release(
    d: Delivery<PayloadOf<typeof ReleaseRequest>>,
  ): Promise<PayloadOf<typeof ReleaseResult>> {
    const req = d.value;
    const r = await this.submit(req.node, {
      kind: 'release',
      ...(req.containerId === undefined ? {} : { containerId: req.containerId }),
      ...(req.podUid === undefined ? {} : { podUid: req.podUid }),
    });
    if (r.kind === 'error') {
      if (r.reason === 'no-record') {
        if (this.nodeView.status(req.node) === 'live') {
          throw new ReplyError(
            IpamErrorCode.notAllocated,
            `nothing is allocated on node ${req.node}`,
          );
        }
        throw new ReplyError(IpamErrorCode.unknownNode, `node ${req.node} is unknown`);
      }
      throw new ReplyError(r.code, r.message);
    }
    if (r.kind !== 'released') throw new Error(`unexpected result ${r.kind} for release`);
    for (const o of r.owners) {
      this.opts.metrics.releases.inc({ reason: 'request' });
      const fields = this.ownerFields(req.node, o);
      this.emit(IpamEventKind.released, (bus, s) =>
        bus.publish(AddressesReleased, s, { ...fields, reason: 'request' }),
      );
    }
    return {
      node: req.node,
      released: r.owners.map((o) => this.ownerFields(req.node, o)),
      alreadyReleased: r.already,
    };
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

  private ownerFields(node: string, o: Owner) {
    return {
      node,
      namespace: o.pod.namespace,
      pod: o.pod.pod,
      podUid: o.pod.podUid,
      containerId: o.containerId,
      addresses: orderedAddresses(o.pod, this.families),
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

  // ---- node records ----

  private queue(node: string): NodeQueue {
    let q = this.queues.get(node);
    if (q === undefined) {
      q = new NodeQueue(node, {
        store: this.requireStore(),
        context: () => this.applyContext(),
        onStored: (n, record, index) => this.observe(n, record, index),
        onConflict: () => this.opts.metrics.conflicts.inc(),
        onBatch: (_, size) => this.opts.metrics.batchSize.observe(size),
      });
      this.queues.set(node, q);
    }
    return q;
  }

  /** Runs one op on a node record; a store failure becomes the `unavailable` error reply. */
  private async submit(node: string, op: Op): Promise<OpResult> {
    try {
      const r = await this.queue(node).submit(op);
      if (r.kind === 'error' && r.reason === 'no-record') this.dropIdleQueue(node);
      return r;
    } catch (err) {
      if (err instanceof StoreError)
        throw new ReplyError(IpamErrorCode.unavailable, err.message, { cause: err });
      throw err;
    }
  }

  private dropIdleQueue(node: string): void {
    const q = this.queues.get(node);
    if (q?.idle === true && this.nodeView.status(node) !== 'live') this.queues.delete(node);
  }

  private applyContext(): ApplyContext {
    return {
      now: this.now(),
      families: this.families,
      releasedTtlMs: RELEASED_TTL_MS,
      releasedMax: RELEASED_MAX,
    };
  }

  private observe(node: string, record: NodeRecord | undefined, index: RecordIndex): void {
    const g = this.opts.metrics.addresses;
    if (record === undefined) {
      for (const family of ['IPv4', 'IPv6']) {
        for (const state of ['used', 'free']) g.remove({ node, family, state });
      }
      return;
    }
    for (const u of usage(index)) {
      g.set({ node, family: u.family, state: 'used' }, u.used);
      g.set({ node, family: u.family, state: 'free' }, u.free);
    }
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
    const q = this.queue(name);
    const before = await q.peek();
    const missing = this.families.filter((f) => before?.blocks[f] === undefined);
    if (missing.length === 0) return before;
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
    if (claims.length === 0) return before;
    // A claim older than half the orphan grace may already look orphaned to a GC: give it back
    // rather than write a record that uses it (only a stall of minutes gets here).
    const fresh = claims.filter((c) => this.now() - c.at < this.opts.orphanGraceMs / 2);
    const blocks: Partial<Record<Family, { cidr: string; gateway: string }>> = {};
    for (const c of fresh) blocks[c.family] = { cidr: c.cidr, gateway: c.gateway };
    let added: readonly Family[] = [];
    try {
      if (fresh.length > 0) {
        const r = await q.submit({ kind: 'add-blocks', name, uid, blocks });
        if (r.kind === 'blocks') added = r.added;
      }
    } finally {
      for (const c of claims) {
        if (added.includes(c.family)) continue;
        // Another replica gave the node a block first, or the write failed: withdraw ours.
        this.opts.metrics.nodeBlocks.inc({ family: c.family, outcome: 'lost' });
        await store.releaseBlock(c.key, c.revision).catch((err: unknown) => {
          this.opts.logger.warn({ err, key: c.key }, 'could not withdraw a block claim; GC will');
        });
        this.claimers.get(c.family)?.forget(c.cidr);
      }
    }
    const after = await q.peek();
    if (added.length > 0 && after !== undefined) {
      this.opts.logger.info({ node: name, blocks: after.blocks }, 'node blocks assigned');
      await this.publishAssignment(after);
    }
    return after;
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
    try {
      const records = await this.readAllRecords();
      for (const r of records.values()) {
        this.observe(r.name, r, indexRecord(r));
        await this.publishAssignment(r);
      }
    } catch (err) {
      this.opts.logger.warn({ err }, 'could not republish node assignments');
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

  private async readAllRecords(): Promise<Map<string, NodeRecord>> {
    const store = this.requireStore();
    const names = await store.nodeNames();
    const out = new Map<string, NodeRecord>();
    await forEachLimited(names, READ_CONCURRENCY, async (n) => {
      const s = await store.getNode(n);
      if (s !== undefined) out.set(n, s.value);
    });
    return out;
  }

  // ---- garbage collection ----

  private scheduleGc(): void {
    if (this.stopped) return;
    const base = this.opts.gcIntervalMs;
    // Jitter, so replicas started together do not scan in lockstep.
    const delay = base * (0.75 + Math.random() * 0.5);
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

  /** One pass: released pods of gone pods, records of deleted nodes, orphan block claims. */
  async gcPass(): Promise<void> {
    const t0 = performance.now();
    const store = this.requireStore();
    if (this.nodeView.nodes.size === 0) {
      // An empty view means kube-bridge has published nothing yet: judging pods gone now
      // would free everything.
      this.opts.metrics.gcRuns.inc({ outcome: 'skipped' });
      return;
    }
    const pods = await readPods(this.opts.bus);
    const records = await this.readAllRecords();
    const list = [...records.values()];
    const now = this.now();
    let releasedOwners = 0;
    let releasedNodes = 0;
    let releasedOrphanBlocks = 0;

    for (const c of planPodGc(list, pods, this.missedPods, now, this.opts.podGraceMs)) {
      const r = await this.queue(c.node).submit({
        kind: 'gc-release',
        containerId: c.containerId,
        podUid: c.podUid,
        at: c.at,
      });
      if (r.kind !== 'released') continue;
      for (const o of r.owners) {
        releasedOwners++;
        this.opts.metrics.releases.inc({ reason: 'pod-deleted' });
        const fields = this.ownerFields(c.node, o);
        this.emit(IpamEventKind.released, (bus, s) =>
          bus.publish(AddressesReleased, s, { ...fields, reason: 'pod-deleted' }),
        );
      }
    }

    for (const c of planNodeGc(list, this.nodeView, this.missedNodes, now, this.opts.nodeGraceMs)) {
      const r = await this.queue(c.node).submit({ kind: 'delete-node', createdAt: c.createdAt });
      if (r.kind !== 'node-deleted') continue;
      releasedNodes++;
      records.delete(c.node);
      this.queues.delete(c.node);
      for (const [cid, pod] of Object.entries(r.record.pods)) {
        this.opts.metrics.releases.inc({ reason: 'node-deleted' });
        const fields = this.ownerFields(c.node, { containerId: cid, pod });
        this.emit(IpamEventKind.released, (bus, s) =>
          bus.publish(AddressesReleased, s, { ...fields, reason: 'node-deleted' }),
        );
      }
      for (const f of ['IPv4', 'IPv6'] as const) {
        const b = r.record.blocks[f];
        if (b === undefined) continue;
        const key = IpamKey.block(f, b.cidr);
        const claim = await store.getBlockClaim(key);
        if (
          claim !== undefined &&
          claim.value.node === c.node &&
          (await store.releaseBlock(key, claim.revision))
        ) {
          this.opts.metrics.nodeBlocks.inc({ family: f, outcome: 'released' });
          this.claimers.get(f)?.forget(b.cidr);
        }
      }
      await this.opts.bus
        .jsPublish(
          IpamNodeEvent,
          ipamNodeSubject(c.node),
          { op: 'delete', node: c.node, blocks: this.blockList(r.record) },
          { ttl: TOMBSTONE_TTL, ceSubject: `node/${c.node}` },
        )
        .catch((err: unknown) =>
          this.opts.logger.warn({ err, node: c.node }, 'could not publish the node tombstone'),
        );
      this.opts.logger.info(
        { node: c.node, blocks: r.record.blocks },
        'deleted node: blocks returned to the pool',
      );
    }

    const claims: BlockClaim[] = [];
    await forEachLimited(await store.blockKeys(), READ_CONCURRENCY, async (key) => {
      const b = parseBlockKey(key);
      const claim = b === undefined ? undefined : await store.getBlockClaim(key);
      if (b === undefined || claim === undefined) return;
      claims.push({
        key,
        family: b.family,
        cidr: b.cidr,
        node: claim.value.node,
        at: claim.value.at,
        revision: claim.revision,
      });
    });
    for (const c of planOrphanBlocks(claims, records, now, this.opts.orphanGraceMs)) {
      // Look again right before: the record may have been written since the scan.
      const current = await store.getNode(c.node);
      if (current?.value.blocks[c.family]?.cidr === c.cidr) continue;
      if (await store.releaseBlock(c.key, c.revision)) {
        releasedOrphanBlocks++;
        this.opts.metrics.nodeBlocks.inc({ family: c.family, outcome: 'released' });
        this.claimers.get(c.family)?.forget(c.cidr);
        this.opts.logger.info({ key: c.key, node: c.node }, 'orphan block claim removed');
      }
    }

    for (const r of records.values()) this.observe(r.name, r, indexRecord(r));
    this.opts.metrics.gcRuns.inc({ outcome: 'ok' });
    if (releasedOwners + releasedNodes + releasedOrphanBlocks > 0) {
      const summary = {
        releasedOwners,
        releasedNodes,
        releasedOrphanBlocks,
        scannedNodes: list.length,
        durationMs: performance.now() - t0,
      };
      this.emit(IpamEventKind.gc, (bus, s) => bus.publish(GcCompleted, s, summary));
    }
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
