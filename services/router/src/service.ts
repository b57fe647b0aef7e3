import { FAMILIES } from '@dyad/netaddr';
import type { Family } from '@dyad/netaddr';
import {
  AGENT_STREAM,
  agentEndpointFilter,
  EndpointReport,
  EndpointSliceEvent,
  IPAM_NODES_STREAM,
  IpamNodeEvent,
  K8S_STREAM,
  NodeEvent,
  POLICY_STREAM,
  PodIdentityEvent,
  PolicyFilter,
  ServiceEvent,
  k8sKindFilter,
} from '@dyad/contracts';
import type { EndpointStateValue, PayloadOf, RouterServiceEntryValue } from '@dyad/contracts';
import { Refusal } from '@dyad/bus';
import type { Bus, BusConsumer } from '@dyad/bus';
import { TraceBatch } from '@dyad/telemetry';
import type { Logger } from '@dyad/telemetry';
import { RouterCore } from './core.ts';
import { diffState, isEmptyUpdate } from './diff.ts';
import { PodIdentities } from './identity.ts';
import { endpointInput, nodeAddresses, nodePodCidrs } from './inputs.ts';
import { familyOf } from './ip.ts';
import { ServiceTable } from './lb-table.ts';
import { endpointProblem } from './ownership.ts';
import type { RouterMetrics } from './metrics.ts';
import type { NodeUpdate } from './model.ts';
import type { RouterStreamPort, StoredNode } from './sink.ts';
import { emptyStored, publishServiceChanges, publishUpdates } from './sink.ts';

const ENDPOINT_FILTER = agentEndpointFilter();

export interface RouterServiceOptions {
  readonly bus: Bus;
  readonly port: RouterStreamPort;
  readonly logger: Logger;
  readonly metrics: RouterMetrics;
  /** Nats-TTL of tombstones. */
  readonly tombstoneTtl: string;
  /** Input changes arriving within this window are published together. */
  readonly flushDelayMs: number;
  /** A full comparison of the stored state with the computed one this often. */
  readonly resyncIntervalMs: number;
  readonly publishConcurrency: number;
}

type NodeMsg = PayloadOf<typeof NodeEvent>;
type IpamMsg = PayloadOf<typeof IpamNodeEvent>;
type EndpointMsg = PayloadOf<typeof EndpointReport>;
type PodIdentityMsg = PayloadOf<typeof PodIdentityEvent>;
type ServiceMsg = PayloadOf<typeof ServiceEvent>;
type SliceMsg = PayloadOf<typeof EndpointSliceEvent>;

const BOTH_FAMILIES: ReadonlySet<Family> = new Set(FAMILIES);

/**
 * The router service: folds four input streams (Node objects for addresses, IPAM assignments
 * for pod CIDRs, agents' endpoint reports, the policy service's pod identities) into the core, and keeps the output stream equal to
 * the core's state: incremental publishes as inputs change, and a reconcile against the stored
 * state at start-up, after any failed publish, and periodically. It holds no state of its own
 * beyond what it can rebuild from the streams, so it may be killed at any moment.
 */
export class RouterService {
  readonly #o: RouterServiceOptions;
  #core = new RouterCore();
  /** Node name → addresses, for nodes the Kubernetes API has: membership follows the Node object. */
  readonly #kubeNodes = new Map<string, Partial<Record<Family, string>>>();
  readonly #ipamNodes = new Map<string, readonly string[]>();
  readonly #identities = new PodIdentities();
  /** Endpoint reports by subject, and their subjects by pod: a pod's new identity re-derives them. */
  readonly #endpoints = new Map<string, EndpointStateValue>();
  /** Reports refused for addresses outside their node's blocks, by subject, retried on new blocks. */
  readonly #refused = new Map<string, EndpointMsg>();
  readonly #endpointsByPod = new Map<string, Set<string>>();
  /** Services and EndpointSlices, compiled per node into the nodes' Service entries. */
  readonly #services = new ServiceTable();
  readonly #consumers: BusConsumer[] = [];
  #queue: Promise<void> = Promise.resolve();
  #flushTimer: NodeJS.Timeout | undefined;
  /** Settles when the flush `#flushTimer` will run is done (or is cancelled by stop). */
  #flushed: Promise<undefined> | undefined;
  #cancelFlush: () => void = () => {};
  /** The traces of the input changes the next flush publishes. */
  readonly #batch = new TraceBatch();
  #firstDirtyAt: number | undefined;
  #reconcileTimer: NodeJS.Timeout | undefined;
  #reconcileBackoffMs = 0;
  #resyncTimer: NodeJS.Timeout | undefined;
  #ready = false;
  #stopped = false;

  constructor(options: RouterServiceOptions) {
    this.#o = options;
  }

  /** Start-up reconcile done and consumers running. */
  get ready(): boolean {
    return this.#ready;
  }

  get revision(): number {
    return this.#core.revision;
  }

  async start(): Promise<void> {
    const { bus } = this.#o;
    // What the stream holds first: revisions continue above it.
    const stored = await this.#o.port.readAll();
    let revision = 0;
    for (const n of stored.values()) revision = Math.max(revision, n.maxRevision);
    this.#core = new RouterCore({ revision });

    const identities = { stream: POLICY_STREAM, filterSubjects: [PolicyFilter.pods] };
    const svcInput = { stream: K8S_STREAM, filterSubjects: [k8sKindFilter('Service')] };
    const sliceInput = { stream: K8S_STREAM, filterSubjects: [k8sKindFilter('EndpointSlice')] };
    const [services, slices] = await Promise.all([
      this.#o.bus.snapshot([ServiceEvent], svcInput),
      this.#o.bus.snapshot([EndpointSliceEvent], sliceInput),
    ]);
    for (const d of services.values()) this.#onService(d.value);
    for (const d of slices.values()) this.#onSlice(d.value);
    const [nodes, ipam, endpoints, pods] = await Promise.all([
      bus.snapshot([NodeEvent], { stream: K8S_STREAM, filterSubjects: [k8sKindFilter('Node')] }),
      bus.snapshot([IpamNodeEvent], { stream: IPAM_NODES_STREAM }),
      bus.snapshot([EndpointReport], { stream: AGENT_STREAM, filterSubjects: [ENDPOINT_FILTER] }),
      bus.snapshot([PodIdentityEvent], identities),
    ]);
    for (const d of nodes.values()) this.#onNode(d.value);
    for (const d of ipam.values()) this.#onIpam(d.value);
    // Identities before endpoints: a restart does not publish `unknown` for a moment.
    for (const d of pods.values()) this.#onPodIdentity(d.value);
    for (const d of endpoints.values()) this.#applyChecked(d.subject, d.value);
    await this.#enqueue(async () => {
      try {
        await this.#reconcileWith(stored);
      } catch (err) {
        this.#o.metrics.publishErrors.inc();
        this.#o.logger.warn({ err }, 'start-up reconcile failed; will retry');
        this.#scheduleReconcile();
      }
    });

    // Live: each consumer replays the last value per subject (a no-op after the snapshot unless
    // something changed in between) and then follows new messages.
    const live = { deliverPolicy: 'last_per_subject' as const };
    this.#consumers.push(
      await bus.consume(
        [NodeEvent],
        { stream: K8S_STREAM, filterSubjects: [k8sKindFilter('Node')], ...live },
        (d) => this.#changed(() => this.#onNode(d.value)),
      ),
      await bus.consume([IpamNodeEvent], { stream: IPAM_NODES_STREAM, ...live }, (d) =>
        this.#changed(() => this.#onIpam(d.value)),
      ),
      await bus.consume(
        [EndpointReport],
        { stream: AGENT_STREAM, filterSubjects: [ENDPOINT_FILTER], ...live },
        (d) => this.#changed(() => this.#onEndpoint(d.subject, d.value)),
      ),
      await bus.consume([PodIdentityEvent], { ...identities, ...live }, (d) =>
        this.#changed(() => this.#onPodIdentity(d.value)),
      ),
      await bus.consume([ServiceEvent], { ...svcInput, ...live }, (d) =>
        this.#changed(() => this.#onService(d.value)),
      ),
      await bus.consume([EndpointSliceEvent], { ...sliceInput, ...live }, (d) =>
        this.#changed(() => this.#onSlice(d.value)),
      ),
    );
    this.#resyncTimer = setInterval(() => this.#scheduleReconcile(0), this.#o.resyncIntervalMs);
    this.#resyncTimer.unref();
    this.#ready = true;
    this.#o.logger.info(
      { revision: this.#core.revision, nodes: this.#core.nodeNames.length },
      'router started',
    );
  }

  /** Resolves once every input applied so far is published (or found unchanged): no flush is
   *  pending and no publish work is queued. */
  async idle(): Promise<void> {
    while (this.#flushed !== undefined) await this.#flushed;
    await this.#queue;
  }

  /** Stops consuming and publishing; waits for work in flight. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#ready = false;
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    this.#flushed = undefined;
    this.#cancelFlush();
    clearTimeout(this.#reconcileTimer);
    clearInterval(this.#resyncTimer);
    await Promise.allSettled(this.#consumers.splice(0).map((c) => c.stop()));
    await this.#queue;
  }

  #onNode(m: NodeMsg): void {
    const name = m.object.metadata.name;
    this.#o.metrics.inputEvents.inc({ source: 'node', op: m.op });
    if (m.op === 'delete') this.#kubeNodes.delete(name);
    else this.#kubeNodes.set(name, nodeAddresses(m.object));
    this.#applyNode(name);
  }

  #onIpam(m: IpamMsg): void {
    this.#o.metrics.inputEvents.inc({ source: 'ipam', op: m.op });
    if (m.op === 'delete') this.#ipamNodes.delete(m.node);
    else this.#ipamNodes.set(m.node, nodePodCidrs(m.blocks));
    this.#applyNode(m.node);
    for (const [subject, ep] of this.#refused) {
      if (ep.endpoint.node === m.node) this.#applyChecked(subject, ep);
    }
  }

  /** Applies a report that may be refused (start-up snapshot, a refused one retried): a refusal
   *  was already dead-lettered or will be by the live consumer, so it is only logged here. */
  #applyChecked(subject: string, m: EndpointMsg): void {
    try {
      this.#onEndpoint(subject, m);
    } catch (err) {
      if (!(err instanceof Refusal)) throw err;
      this.#o.logger.debug(
        { subject, reason: err.reason, detail: err.message },
        'endpoint refused',
      );
    }
  }

  #onEndpoint(subject: string, m: EndpointMsg): void {
    this.#o.metrics.inputEvents.inc({ source: 'endpoint', op: m.op });
    // Refused before anything changes: a bad report never replaces the valid one it follows.
    const problem = endpointProblem(
      subject,
      m.endpoint,
      this.#ipamNodes.get(m.endpoint.node) ?? [],
      m.op,
    );
    if (problem !== undefined) {
      // Its node's blocks may not have arrived yet (another consumer): checked again when they do.
      if (problem.reason === 'outside-node-blocks') this.#refused.set(subject, m);
      throw new Refusal(problem.reason, problem.detail);
    }
    this.#refused.delete(subject);
    const pod = `${m.endpoint.pod.namespace}/${m.endpoint.pod.name}`;
    const had = this.#endpoints.get(subject);
    if (had !== undefined) {
      const old = `${had.pod.namespace}/${had.pod.name}`;
      this.#endpointsByPod.get(old)?.delete(subject);
      if (this.#endpointsByPod.get(old)?.size === 0) this.#endpointsByPod.delete(old);
    }
    // The subject names the endpoint (node, container, interface) uniquely and for good.
    if (m.op === 'delete') {
      this.#endpoints.delete(subject);
      this.#core.removeEndpoint(subject);
      return;
    }
    this.#endpoints.set(subject, m.endpoint);
    let subjects = this.#endpointsByPod.get(pod);
    if (subjects === undefined) this.#endpointsByPod.set(pod, (subjects = new Set()));
    subjects.add(subject);
    this.#core.setEndpoint(subject, endpointInput(m.endpoint, this.#identities));
  }

  /** A pod's identity came, changed or went: its endpoints' entries follow. */
  #onPodIdentity(m: PodIdentityMsg): void {
    this.#o.metrics.inputEvents.inc({ source: 'identity', op: m.op });
    if (!this.#identities.apply(m)) return;
    for (const subject of this.#endpointsByPod.get(`${m.namespace}/${m.name}`) ?? []) {
      const ep = this.#endpoints.get(subject);
      if (ep !== undefined) this.#core.setEndpoint(subject, endpointInput(ep, this.#identities));
    }
  }

  #onService(m: ServiceMsg): void {
    this.#o.metrics.inputEvents.inc({ source: 'service', op: m.op });
    const { namespace = 'default', name } = m.object.metadata;
    this.#services.setService(m.op === 'delete' ? undefined : m.object, namespace, name);
  }

  #onSlice(m: SliceMsg): void {
    this.#o.metrics.inputEvents.inc({ source: 'endpointslice', op: m.op });
    const { namespace = 'default', name } = m.object.metadata;
    this.#services.setSlice(m.op === 'delete' ? undefined : m.object, namespace, name);
  }

  /** The families the cluster serves: those of the pod blocks ipam handed out (both before any). */
  #families(): ReadonlySet<Family> {
    const out = new Set<Family>();
    for (const cidrs of this.#ipamNodes.values())
      for (const c of cidrs) {
        const f = familyOf(c);
        if (f !== undefined) out.add(f);
      }
    return out.size === 0 ? BOTH_FAMILIES : out;
  }

  /** Compiles what changed in Services and publishes it under a fresh revision. */
  async #publishServices(): Promise<void> {
    const changes = this.#services.drain(this.#core.publishedNodes, this.#families(), (n) =>
      this.#kubeNodes.get(n),
    );
    if (changes.length === 0) return;
    const revision = this.#core.nextRevision();
    await publishServiceChanges(this.#o.port, changes, revision, {
      tombstoneTtl: this.#o.tombstoneTtl,
      concurrency: this.#o.publishConcurrency,
    });
    this.#o.metrics.revision.set(this.#core.revision);
  }

  #applyNode(name: string): void {
    const addresses = this.#kubeNodes.get(name);
    if (addresses === undefined) this.#core.removeNode(name);
    else this.#core.setNode(name, { addresses, podCidrs: this.#ipamNodes.get(name) ?? [] });
  }

  #changed(apply: () => void): void {
    apply();
    if (this.#stopped) return;
    this.#batch.add();
    this.#firstDirtyAt ??= performance.now();
    if (this.#flushTimer !== undefined) return;
    const flushed = Promise.withResolvers<undefined>();
    this.#flushed = flushed.promise;
    this.#cancelFlush = () => flushed.resolve(undefined);
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined;
      void this.#enqueue(() => this.#flush()).finally(() => {
        if (this.#flushed === flushed.promise) this.#flushed = undefined;
        flushed.resolve(undefined);
      });
    }, this.#o.flushDelayMs);
  }

  /** Runs publish work one piece at a time: flushes and reconciles never interleave. */
  #enqueue(task: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(task).catch((err: unknown) => {
      this.#o.logger.error({ err }, 'router task failed');
    });
    this.#queue = run;
    return run;
  }

  async #flush(): Promise<void> {
    const started = this.#firstDirtyAt;
    this.#firstDirtyAt = undefined;
    await this.#batch.run('router flush', {}, async (span) => {
      const updates = this.#core.drain();
      span.setAttribute('dyad.router.updates', updates.length);
      await this.#publishFlush(updates, started);
    });
  }

  async #publishFlush(updates: readonly NodeUpdate[], started: number | undefined): Promise<void> {
    try {
      if (updates.length > 0) await this.#publish(updates, 'flush');
      await this.#publishServices();
      if (started !== undefined) {
        this.#o.metrics.flushSeconds.observe((performance.now() - started) / 1000);
      }
    } catch (err) {
      this.#o.metrics.publishErrors.inc();
      this.#o.logger.warn(
        { err, revision: updates[0]?.revision },
        'publish failed; will reconcile',
      );
      this.#scheduleReconcile();
    }
  }

  async #publish(updates: readonly NodeUpdate[], kind: 'flush' | 'reconcile'): Promise<void> {
    await publishUpdates(this.#o.port, updates, {
      tombstoneTtl: this.#o.tombstoneTtl,
      concurrency: this.#o.publishConcurrency,
    });
    this.#o.metrics.published.inc({ kind }, updates.length);
    this.#o.metrics.revision.set(this.#core.revision);
    this.#o.metrics.nodes.set(this.#core.publishedNodes.length);
    for (const u of updates) {
      if (!u.gone) this.#o.metrics.ipcacheEntries.set(u.ipcacheEntries);
    }
  }

  /** A reconcile after `delayMs`, or after a backoff that grows while reconciles keep failing. */
  #scheduleReconcile(delayMs?: number): void {
    if (this.#stopped || this.#reconcileTimer !== undefined) return;
    const wait = delayMs ?? Math.max(500, this.#reconcileBackoffMs);
    this.#reconcileTimer = setTimeout(() => {
      this.#reconcileTimer = undefined;
      void this.#enqueue(async () => {
        try {
          await this.#reconcileWith(await this.#o.port.readAll());
          this.#reconcileBackoffMs = 0;
        } catch (err) {
          this.#o.metrics.reconciles.inc({ outcome: 'failed' });
          this.#reconcileBackoffMs = Math.min(30_000, Math.max(1000, this.#reconcileBackoffMs * 2));
          this.#o.logger.warn({ err, retryInMs: this.#reconcileBackoffMs }, 'reconcile failed');
          this.#scheduleReconcile();
        }
      });
    }, wait);
  }

  /** Publishes whatever makes the stored state equal to the computed one, for every node. */
  async #reconcileWith(stored: Map<string, StoredNode>): Promise<void> {
    // Pending input changes become part of the computed state; the diff below covers them.
    this.#core.drain();
    const nodes = new Set([...this.#core.publishedNodes, ...stored.keys()]);
    for (const node of nodes)
      this.#services.setPublished(
        node,
        stored.get(node)?.services ?? new Map<string, RouterServiceEntryValue>(),
      );
    await this.#publishServices();
    const pending: NodeUpdate[] = [];
    for (const node of nodes) {
      const have = stored.get(node) ?? emptyStored();
      const live = this.#core.hasNode(node);
      const u = diffState(node, 0, live ? this.#core.state(node) : undefined, have);
      const syncOk = live
        ? have.sync?.op === 'upsert' &&
          have.sync.ipcacheEntries === u.ipcacheEntries &&
          have.sync.routes === u.routes
        : have.sync === undefined || have.sync.op === 'delete';
      if (isEmptyUpdate(u) && syncOk) continue;
      pending.push(u);
    }
    if (pending.length === 0) {
      this.#o.metrics.reconciles.inc({ outcome: 'in-sync' });
      return;
    }
    const revision = this.#core.nextRevision();
    const updates = pending.map((u) => ({ ...u, revision }));
    await this.#publish(updates, 'reconcile');
    this.#o.metrics.reconciles.inc({ outcome: 'repaired' });
    this.#o.logger.info(
      { revision, nodes: updates.map((u) => u.node) },
      'reconcile published the difference',
    );
  }
}
