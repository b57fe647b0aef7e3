import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import { SpanKind, context, trace } from '@opentelemetry/api';
import type { Context } from '@opentelemetry/api';
import { KeyedPublisher } from '@dyad/bus';
import type { MessageContract } from '@dyad/contracts';
import { formatIssues, k8sKindFilter, k8sObjectSubject } from '@dyad/contracts';
import type { Logger } from 'pino';
import type { WatchedKind } from './kinds.ts';
import type { BridgeMetrics } from './metrics.ts';
import type { StreamEntry, Version } from './reconcile.ts';
import { planReconcile } from './reconcile.ts';
import type { ObjectOp } from './watcher.ts';
import { KindWatcher } from './watcher.ts';

/** An object event as it sits in the stream. */
export interface ObjectEvent {
  readonly op: ObjectOp;
  readonly object: {
    readonly metadata: { readonly uid: string; readonly resourceVersion: string };
  };
}

/** What kube-bridge needs from JetStream; the bus adapter implements it, tests may too. */
export interface ObjectStreamPort {
  publish(
    contract: MessageContract,
    subject: string,
    event: unknown,
    opts: { readonly msgId: string; readonly ttlMs?: number },
  ): Promise<void>;
  /** The last event of every subject under `filter`, decoded with the contract. */
  lastValues(contract: MessageContract, filter: string): Promise<Map<string, ObjectEvent>>;
  /**
   * Calls `listener` once the stream is there again after NATS reconnected (declared anew: the
   * server may have come back without its data). Returns the unsubscribe.
   */
  onReconnect(listener: () => void): () => void;
}

export interface BridgeOptions {
  readonly kubeConfig: KubeConfig;
  readonly kinds: readonly WatchedKind[];
  readonly stream: ObjectStreamPort;
  readonly logger: Logger;
  readonly metrics: BridgeMetrics;
  /** Full compare of stream and API server state, besides the one after every list. */
  readonly resyncIntervalMs: number;
  /** How long a tombstone stays in the stream before JetStream removes it. */
  readonly tombstoneTtlMs: number;
  readonly publishConcurrency?: number;
}

/**
 * Mirrors the six kinds into the DYAD_K8S stream. Events go out as they come; after each list,
 * on resync and on demand the stream is reconciled against the informers' caches.
 */
export class KubeBridge {
  readonly #o: BridgeOptions;
  readonly #publisher: KeyedPublisher;
  readonly #watchers: KindWatcher[];
  readonly #reconciling = new Map<string, Promise<void>>();
  #resync: NodeJS.Timeout | undefined;
  #unsubscribe: (() => void) | undefined;

  constructor(o: BridgeOptions) {
    this.#o = o;
    this.#publisher = new KeyedPublisher({
      concurrency: o.publishConcurrency ?? 64,
      backoff: { initialMs: 200, maxMs: 5_000 },
      onError: (subject, err, attempt) => {
        o.metrics.publishErrors.inc();
        if (attempt === 1 || attempt % 20 === 0) {
          o.logger.warn({ err, subject, attempt }, 'publish failed; retrying with backoff');
        }
      },
      onPublished: () => o.metrics.backlog.set(this.#publisher.backlog),
    });
    this.#watchers = o.kinds.map(
      (kind) =>
        new KindWatcher(o.kubeConfig, kind, {
          onObject: (op, obj) => this.#onObject(kind, op, obj),
          onListed: (items) => {
            o.metrics.lists.inc({ kind: kind.kind });
            o.logger.info({ kind: kind.kind, objects: items.length }, 'listed');
            void this.reconcile(kind.kind);
          },
          onExpired: () => {
            o.metrics.watchExpiries.inc({ kind: kind.kind });
            o.logger.warn({ kind: kind.kind }, 'watch expired (410 Gone); relisting');
          },
          onError: (err, retryInMs) => {
            o.metrics.watchErrors.inc({ kind: kind.kind });
            o.logger.warn(
              { err, kind: kind.kind, retryInMs },
              'watch failed; relisting after backoff',
            );
          },
        }),
    );
  }

  start(): void {
    for (const w of this.#watchers) w.start();
    this.#resync = setInterval(() => void this.reconcileAll(), this.#o.resyncIntervalMs);
    this.#resync.unref();
    // a server that lost its data gets every object again now, not at the next resync
    this.#unsubscribe = this.#o.stream.onReconnect(() => void this.reconcileAll());
  }

  async stop(): Promise<void> {
    if (this.#resync !== undefined) clearInterval(this.#resync);
    this.#unsubscribe?.();
    await Promise.all(this.#watchers.map((w) => w.stop()));
    await Promise.allSettled(this.#reconciling.values());
    this.#publisher.close();
  }

  /** Every informer has listed at least once since it was (re)made. */
  get synced(): boolean {
    return this.#watchers.every((w) => w.synced);
  }

  get backlog(): number {
    return this.#publisher.backlog;
  }

  /** Resolves once every kind has listed and everything queued has been acknowledged. */
  async settled(): Promise<void> {
    while (!this.synced || this.#reconciling.size > 0 || this.#publisher.backlog > 0) {
      await Promise.allSettled(this.#reconciling.values());
      await this.#publisher.idle();
      if (!this.synced) await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Drops every watch and cache and lists again from scratch (what a 410 or restart does). */
  relistAll(): void {
    for (const w of this.#watchers) w.relist();
  }

  async reconcileAll(): Promise<void> {
    await Promise.all(this.#watchers.map((w) => this.reconcile(w.kind.kind)));
  }

  /** Compares one kind's stream subjects with the informer cache and queues the differences. */
  reconcile(kind: string): Promise<void> {
    const running = this.#reconciling.get(kind);
    if (running !== undefined) return running;
    const w = this.#watchers.find((x) => x.kind.kind === kind);
    if (w === undefined || !w.synced) return Promise.resolve();
    const p = this.#reconcileKind(w).finally(() => this.#reconciling.delete(kind));
    this.#reconciling.set(kind, p);
    return p;
  }

  async #reconcileKind(w: KindWatcher): Promise<void> {
    const { kind, contract } = w.kind;
    let stream: Map<string, ObjectEvent>;
    try {
      stream = await this.#o.stream.lastValues(contract, k8sKindFilter(kind));
    } catch (err) {
      this.#o.logger.warn(
        { err, kind },
        'reconcile could not read the stream; the next resync retries',
      );
      return;
    }
    if (!w.synced) return;
    // From here to the end everything is synchronous: the cache cannot change under the plan.
    const current = new Map<string, KubernetesObject>();
    for (const obj of w.cached()) current.set(this.#subjectOf(w.kind, obj), obj);
    const plan = planReconcile(toEntries(stream), toVersions(current));
    for (const subject of plan.upserts) {
      const obj = current.get(subject);
      if (obj !== undefined) this.#onObject(w.kind, 'upsert', obj);
    }
    for (const subject of plan.tombstones) {
      const last = stream.get(subject);
      if (last !== undefined) this.#enqueue(w.kind, subject, { op: 'delete', object: last.object });
    }
    this.#o.metrics.reconciled.inc({ kind, action: 'upsert' }, plan.upserts.length);
    this.#o.metrics.reconciled.inc({ kind, action: 'tombstone' }, plan.tombstones.length);
    if (plan.upserts.length + plan.tombstones.length > 0) {
      this.#o.logger.info(
        { kind, upserts: plan.upserts.length, tombstones: plan.tombstones.length },
        'reconciled',
      );
    }
  }

  #subjectOf(kind: WatchedKind, obj: KubernetesObject): string {
    return k8sObjectSubject(
      kind.kind,
      kind.namespaced ? obj.metadata?.namespace : undefined,
      obj.metadata?.name ?? '',
    );
  }

  #onObject(kind: WatchedKind, op: ObjectOp, obj: KubernetesObject): void {
    const event = { op, object: kind.normalize(obj) };
    // Refuse an object the contract refuses here, once, instead of retrying it forever.
    const parsed = kind.contract.schema.safeParse(event);
    if (!parsed.success) {
      this.#o.metrics.invalidObjects.inc({ kind: kind.kind });
      this.#o.logger.error(
        {
          kind: kind.kind,
          namespace: obj.metadata?.namespace,
          name: obj.metadata?.name,
          issues: formatIssues(parsed.error.issues),
        },
        'object does not fit its contract; not published',
      );
      return;
    }
    // One span per observed change: the root of the trace that follows this object through
    // ipam, router and the agents. The publish may happen later (queue, retries); it runs in
    // this span's context.
    const span = trace.getTracer('@dyad/kube-bridge').startSpan(`k8s ${op} ${kind.kind}`, {
      kind: SpanKind.CONSUMER,
      attributes: {
        'k8s.kind': kind.kind,
        'k8s.namespace': obj.metadata?.namespace ?? '',
        'k8s.name': obj.metadata?.name ?? '',
        'k8s.resource_version': obj.metadata?.resourceVersion ?? '',
      },
    });
    span.end();
    this.#enqueue(
      kind,
      this.#subjectOf(kind, obj),
      parsed.data as ObjectEvent,
      trace.setSpan(context.active(), span),
    );
  }

  #enqueue(
    kind: WatchedKind,
    subject: string,
    event: ObjectEvent,
    ctx: Context = context.active(),
  ): void {
    const meta = event.object.metadata;
    const msgId = `${meta.uid}:${meta.resourceVersion}:${event.op}`;
    const ttl = event.op === 'delete' ? { ttlMs: this.#o.tombstoneTtlMs } : {};
    this.#publisher.enqueue({
      subject,
      send: async () => {
        await context.with(ctx, () =>
          this.#o.stream.publish(kind.contract, subject, event, { msgId, ...ttl }),
        );
        this.#o.metrics.published.inc({ kind: kind.kind, op: event.op });
      },
    });
    this.#o.metrics.backlog.set(this.#publisher.backlog);
  }
}

function toEntries(stream: ReadonlyMap<string, ObjectEvent>): Map<string, StreamEntry> {
  const out = new Map<string, StreamEntry>();
  for (const [s, e] of stream) {
    out.set(s, {
      op: e.op,
      uid: e.object.metadata.uid,
      resourceVersion: e.object.metadata.resourceVersion,
    });
  }
  return out;
}

function toVersions(current: ReadonlyMap<string, KubernetesObject>): Map<string, Version> {
  const out = new Map<string, Version>();
  for (const [s, o] of current)
    out.set(s, { uid: o.metadata?.uid ?? '', resourceVersion: o.metadata?.resourceVersion ?? '' });
  return out;
}
