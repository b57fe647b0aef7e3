import {
  ALL_NODES_POLICY_FILTER,
  IdentityEvent,
  K8S_STREAM,
  NODE_DESIRED_STREAM,
  NamespaceEvent,
  NetworkPolicyEvent,
  POLICY_STREAM,
  PodEvent,
  PodIdentityEvent,
  PodPolicyDesiredV2,
  DeadLetterHeader,
  PolicyFilter,
  PolicyIdentityBucket,
  PolicyStatusEvent,
  PolicyProblemCode,
  deadLetterSubject,
  defineMessage,
  k8sKindFilter,
  k8sObjectSubject,
  parseK8sObjectSubject,
  nodePolicySubject,
  parseNodePolicySubject,
  policyIdentitySubject,
  policyPodSubject,
  policyStatusSubject,
} from '@dyad/contracts';
import type { MessageContract, NetworkPolicyObject, PayloadOf, PodObject } from '@dyad/contracts';
import { KeyedPublisher, jsPublishJob } from '@dyad/bus';
import type { Bus, BusWorker, JsDelivery } from '@dyad/bus';
import { TraceBatch } from '@dyad/telemetry';
import type { Logger } from '@dyad/telemetry';
import { z } from 'zod';
import { readPrefix } from './cidr.ts';
import type { Prefix } from './cidr.ts';
import { PolicyEngine } from './engine.ts';
import { IdentityStore } from './identity-store.ts';
import { identityLabels, namespaceLabels } from './labels.ts';
import type { Labels } from './labels.ts';
import type { PolicyMetrics } from './metrics.ts';
import type { CompileOptions, PodInput, PolicyDelta } from './model.ts';
import { podKey } from './model.ts';
import type { ContainerPortInput } from './ports.ts';
import { LastValueSink, stableJson } from './sink.ts';
import type { SinkPort } from './sink.ts';
import { normalizePolicy, objectKey } from './spec.ts';

export interface PolicyServiceOptions {
  readonly bus: Bus;
  readonly logger: Logger;
  readonly metrics: PolicyMetrics;
  /** Nats-TTL of tombstones. */
  readonly tombstoneTtl: string;
  /** Input changes arriving within this window are compiled and published together. */
  readonly flushDelayMs: number;
  /** A from-scratch compile and a comparison of the stored outputs this often. */
  readonly resyncIntervalMs: number;
  readonly identityGraceMs: number;
  readonly identityGcIntervalMs: number;
  readonly allowHost: boolean;
  readonly now?: () => number;
}

type NamespaceMsg = PayloadOf<typeof NamespaceEvent>;
type PodMsg = PayloadOf<typeof PodEvent>;
type PolicyMsg = PayloadOf<typeof NetworkPolicyEvent>;

/**
 * NetworkPolicy events read for their presence only: anything with an `op` decodes. What is
 * present this way but does not decode fully was refused (dead-lettered), and the last version
 * accepted stays enforced.
 */
const NetworkPolicyPresence = defineMessage({
  ...NetworkPolicyEvent,
  schema: z.object({ op: z.enum(['upsert', 'delete']) }),
});

/** A pod that can hold traffic of its own: not on the host's network, not finished. */
export function isPolicyPod(pod: PodObject): boolean {
  return !pod.spec.hostNetwork && pod.status.phase !== 'Succeeded' && pod.status.phase !== 'Failed';
}

export function containerPorts(pod: PodObject): ContainerPortInput[] {
  return pod.spec.containers.flatMap((c) =>
    c.ports.map((p) => ({
      ...(p.name === undefined ? {} : { name: p.name }),
      port: p.containerPort,
      protocol: p.protocol,
    })),
  );
}

export function podAddresses(pod: PodObject): Prefix[] {
  return pod.status.podIPs.flatMap((ip) => {
    const p = readPrefix(ip);
    return p === undefined ? [] : [p];
  });
}

function upserts<C extends MessageContract>(
  m: ReadonlyMap<string, JsDelivery<PayloadOf<C>>>,
): Array<readonly [string, unknown]> {
  return [...m].flatMap(([s, d]) => {
    const v: unknown = d.value;
    return typeof v === 'object' && v !== null && 'op' in v && v.op === 'upsert'
      ? [[s, v] as const]
      : [];
  });
}

/**
 * The policy service: folds Namespaces, Pods and NetworkPolicies (stream DYAD_K8S) into
 * identities (IdentityStore) and the incremental compiler (PolicyEngine), and keeps its four
 * outputs equal to what they say: identities, pod identities and policy statuses on DYAD_POLICY,
 * each pod's compiled policy on its node's subject in DYAD_NODE. It holds nothing it cannot
 * rebuild from the streams and the identity bucket; a restart with unchanged inputs publishes
 * nothing.
 */
export class PolicyService {
  readonly #o: PolicyServiceOptions;
  readonly #compile: CompileOptions;
  #engine: PolicyEngine;
  #store: IdentityStore | undefined;
  readonly #publisher: KeyedPublisher;
  readonly #identities: LastValueSink<typeof IdentityEvent>;
  readonly #podIdentities: LastValueSink<typeof PodIdentityEvent>;
  readonly #statuses: LastValueSink<typeof PolicyStatusEvent>;
  readonly #nodePolicies: LastValueSink<typeof PodPolicyDesiredV2>;
  readonly #namespaces = new Map<string, Labels>();
  /** The newest object of every pod that takes part, waiting for its identity or not. */
  readonly #rawPods = new Map<string, PodObject>();
  readonly #unresolved = new Set<string>();
  /** Each policy's object as last accepted, and the policies whose newest version was refused. */
  readonly #accepted = new Map<string, NetworkPolicyObject>();
  readonly #refused = new Set<string>();
  readonly #workers: BusWorker[] = [];
  readonly #timers: NodeJS.Timeout[] = [];
  #flushTimer: NodeJS.Timeout | undefined;
  /** The traces of the input changes the next flush compiles. */
  readonly #batch = new TraceBatch();
  #retryTimer: NodeJS.Timeout | undefined;
  #reconciling: Promise<void> | undefined;
  #ready = false;
  #stopped = false;

  constructor(options: PolicyServiceOptions) {
    this.#o = options;
    this.#compile = { allowHost: options.allowHost };
    this.#engine = new PolicyEngine(this.#compile);
    const { bus, logger, metrics } = options;
    // Newest value per subject, retried with backoff while NATS is away.
    this.#publisher = new KeyedPublisher({
      concurrency: 256,
      backoff: { initialMs: 250, maxMs: 10_000 },
      onError: (subject, err, attempt) =>
        logger.warn({ err, subject, attempt }, 'not published yet; retrying'),
    });
    const port: SinkPort = {
      publish: (contract, subject, payload, opts) =>
        this.#publisher.enqueue(jsPublishJob(() => bus, contract, subject, payload, opts ?? {})),
    };
    const sink = <C extends MessageContract>(contract: C, kind: string) =>
      new LastValueSink({
        contract,
        port,
        tombstoneTtl: options.tombstoneTtl,
        onRefused: (subject, why) => {
          metrics.refused.inc({ kind });
          logger.error({ subject, why }, 'message not sent: it cannot be');
        },
        onPublished: () => metrics.published.inc({ kind }),
      });
    this.#identities = sink(IdentityEvent, 'identity');
    this.#podIdentities = sink(PodIdentityEvent, 'pod');
    this.#statuses = sink(PolicyStatusEvent, 'status');
    this.#nodePolicies = sink(PodPolicyDesiredV2, 'node-policy');
  }

  /** Start-up done: inputs read, outputs reconciled, consumers running. */
  get ready(): boolean {
    return this.#ready;
  }

  /** The identity of a pod, as published (undefined while it has none). */
  podIdentity(namespace: string, name: string): number | undefined {
    return this.#engine.pod(podKey(namespace, name))?.identity;
  }

  async start(): Promise<void> {
    const { bus, logger } = this.#o;
    await bus.ensureKv([PolicyIdentityBucket]);
    const stored = await this.#readStored();
    this.#loadSinks(stored);
    const store = new IdentityStore({
      kv: await bus.kv(PolicyIdentityBucket.bucket),
      logger,
      graceMs: this.#o.identityGraceMs,
      onChange: (id, labels) => this.#identityChanged(id, labels),
      ...(this.#o.now === undefined ? {} : { now: this.#o.now }),
    });
    this.#store = store;
    let highest = 0;
    for (const d of stored.identities.values()) highest = Math.max(highest, d.value.identity);
    await store.start(highest);

    const k8s = (kind: 'Namespace' | 'Pod' | 'NetworkPolicy') => ({
      stream: K8S_STREAM,
      filterSubjects: [k8sKindFilter(kind)],
    });
    const [namespaces, pods, policies, present] = await Promise.all([
      bus.snapshot([NamespaceEvent], k8s('Namespace')),
      bus.snapshot([PodEvent], k8s('Pod')),
      bus.snapshot([NetworkPolicyEvent], k8s('NetworkPolicy')),
      bus.snapshot([NetworkPolicyPresence], k8s('NetworkPolicy')),
    ]);
    for (const d of namespaces.values()) this.#onNamespace(d.value, false);
    for (const d of policies.values()) this.#onPolicy(d.value);
    // A policy whose newest value was refused: what this service last accepted stays enforced.
    for (const subject of present.keys()) {
      if (!policies.has(subject)) this.#keepLastAccepted(subject, stored.statuses);
    }
    // Every pod's identity before the first compile, so the first publication is complete.
    await Promise.all([...pods.values()].map((d) => this.#onPod(d.value)));
    this.#flush();
    this.#retainDesired();

    const live = { deliverPolicy: 'last_per_subject' as const };
    this.#workers.push(
      await bus.consume([NamespaceEvent], { ...k8s('Namespace'), ...live }, (d) => {
        this.#onNamespace(d.value, true);
        this.#changed();
      }),
      await bus.consume([NetworkPolicyEvent], { ...k8s('NetworkPolicy'), ...live }, (d) => {
        this.#onPolicy(d.value);
        this.#changed();
      }),
      await bus.consume([PodEvent], { ...k8s('Pod'), ...live }, (d) => {
        void this.#onPod(d.value);
        this.#changed();
      }),
    );
    // Our own refusals: a NetworkPolicy update that did not decode is reported in its status.
    const refusals = bus.subscribe([NetworkPolicyPresence], deadLetterSubject(bus.service), (d) => {
      const subject = d.header(DeadLetterHeader.subject);
      if (subject !== undefined) this.#refusedUpdate(subject);
    });
    this.#workers.push(refusals);
    this.#every(this.#o.identityGcIntervalMs, () => this.#gc());
    this.#every(this.#o.resyncIntervalMs, () => this.resync());
    this.#ready = true;
    logger.info(
      {
        pods: this.#engine.podCount,
        policies: this.#engine.policyCount,
        identities: store.all().size,
      },
      'policy service started',
    );
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#ready = false;
    clearTimeout(this.#flushTimer);
    clearTimeout(this.#retryTimer);
    for (const t of this.#timers) clearInterval(t);
    await Promise.allSettled(this.#workers.splice(0).map((c) => c.stop()));
    await this.#reconciling;
    await this.#store?.stop();
    await this.#publisher.idle();
    this.#publisher.close();
  }

  /** Resolves once everything decided so far is published. */
  async idle(): Promise<void> {
    await this.#reconciling;
    await this.#publisher.idle();
  }

  /**
   * The full check: the incremental state against a from-scratch compile (a difference is a
   * bug: logged, counted and repaired by recompiling), then the stored outputs against the live
   * state (lost publishes, a server that lost its data).
   */
  resync(): Promise<void> {
    this.#reconciling ??= this.#resync().finally(() => (this.#reconciling = undefined));
    return this.#reconciling;
  }

  async #resync(): Promise<void> {
    if (this.#stopped) return;
    this.#flush();
    // From scratch with a fresh engine (far cheaper than compileAll, the tests' reference, which
    // checks every peer against every pod): catches any drift of the incremental bookkeeping.
    const fresh = new PolicyEngine(this.#compile);
    for (const p of this.#engine.policies()) fresh.upsertPolicy(p);
    for (const p of this.#engine.pods()) fresh.upsertPod(p);
    fresh.drain();
    const want = fresh.published();
    const have = this.#engine.published();
    const same =
      want.size === have.size &&
      [...want].every(([k, w]) => stableJson(w) === stableJson(have.get(k)));
    if (!same) {
      this.#o.metrics.resyncs.inc({ outcome: 'recompiled' });
      this.#o.logger.error(
        { want: want.size, have: have.size },
        'incremental policy state differs from a from-scratch compile; using the latter',
      );
      this.#engine = fresh;
    }
    try {
      const stored = await this.#readStored();
      // stop() may have run during the await; the type checker keeps the narrowing from before it
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
      if (this.#stopped) return;
      this.#loadSinks(stored);
      const repaired = this.#publishAll() + this.#retainDesired();
      if (same) this.#o.metrics.resyncs.inc({ outcome: repaired > 0 ? 'repaired' : 'in-sync' });
      if (repaired > 0) this.#o.logger.info({ repaired }, 'resync published the difference');
    } catch (err) {
      this.#o.logger.warn({ err }, 'resync could not read the stored outputs; will retry');
    }
  }

  // ---- inputs ----

  #onNamespace(m: NamespaceMsg, resolvePods: boolean): void {
    const name = m.object.metadata.name;
    this.#o.metrics.inputEvents.inc({ kind: 'namespace', op: m.op });
    if (m.op === 'delete') this.#namespaces.delete(name);
    else this.#namespaces.set(name, m.object.metadata.labels);
    if (!resolvePods) return;
    for (const [key, pod] of this.#rawPods) {
      if ((pod.metadata.namespace ?? 'default') === name) void this.#resolvePod(key);
    }
  }

  #onPolicy(m: PolicyMsg): void {
    const np = m.object;
    const namespace = np.metadata.namespace ?? 'default';
    const name = np.metadata.name;
    this.#o.metrics.inputEvents.inc({ kind: 'networkpolicy', op: m.op });
    const subject = policyStatusSubject(namespace, name);
    const key = objectKey(namespace, name);
    this.#refused.delete(key);
    if (m.op === 'delete') {
      this.#accepted.delete(key);
      this.#engine.removePolicy(namespace, name);
      this.#statuses.remove(subject, { op: 'delete', namespace, name });
    } else {
      this.#accepted.set(key, np);
      this.#engine.upsertPolicy(normalizePolicy(np));
      this.#publishStatus(key);
    }
    const all = [...this.#engine.policies()];
    this.#o.metrics.policies.set(all.length);
    this.#o.metrics.policiesWithProblems.set(all.filter((p) => p.problems.length > 0).length);
  }

  #publishStatus(key: string): boolean {
    const np = this.#accepted.get(key);
    if (np === undefined) return false;
    const status = statusOf(np, this.#refused.has(key));
    const sent = this.#statuses.upsert(policyStatusSubject(status.namespace, status.name), status);
    if (sent && status.problems.length > 0) {
      this.#o.logger.warn(
        { policy: key, problems: status.problems },
        'NetworkPolicy not enforced exactly as written',
      );
    }
    return sent;
  }

  /** At start-up: the newest value of a policy did not decode; enforce the one accepted before. */
  #keepLastAccepted(subject: string, statuses: StoredOutputs['statuses']): void {
    const at = parseK8sObjectSubject(subject);
    if (at === undefined || at.namespace === undefined) return;
    const held = statuses.get(policyStatusSubject(at.namespace, at.name))?.value;
    const key = objectKey(at.namespace, at.name);
    if (held?.op !== 'upsert') {
      this.#o.logger.error(
        { subject },
        'a NetworkPolicy that never decoded: nothing of it can be enforced',
      );
      return;
    }
    this.#accepted.set(key, held.accepted);
    this.#refused.add(key);
    this.#engine.upsertPolicy(normalizePolicy(held.accepted));
    this.#publishStatus(key);
  }

  /** A NetworkPolicy update was dead-lettered: the last one accepted stays, and its status says so. */
  #refusedUpdate(subject: string): void {
    const at = parseK8sObjectSubject(subject);
    if (at === undefined || at.namespace === undefined || at.kind !== 'networkpolicy') return;
    if (k8sObjectSubject('NetworkPolicy', at.namespace, at.name) !== subject) return;
    const key = objectKey(at.namespace, at.name);
    this.#refused.add(key);
    this.#publishStatus(key);
  }

  #onPod(m: PodMsg): Promise<void> {
    const pod = m.object;
    const namespace = pod.metadata.namespace ?? 'default';
    const name = pod.metadata.name;
    const key = podKey(namespace, name);
    this.#o.metrics.inputEvents.inc({ kind: 'pod', op: m.op });
    if (m.op === 'delete' || !isPolicyPod(pod)) {
      this.#rawPods.delete(key);
      this.#unresolved.delete(key);
      this.#engine.removePod(namespace, name);
      this.#podIdentities.remove(policyPodSubject(namespace, name), {
        op: 'delete',
        namespace,
        name,
      });
      return Promise.resolve();
    }
    this.#rawPods.set(key, pod);
    return this.#resolvePod(key);
  }

  /**
   * Gives the pod's newest object to the compiler once its labels have an identity; allocates
   * one first if they have none. The allocation is asynchronous: whatever the pod looks like when
   * it completes is what is resolved, so a pod that changed meanwhile is never given an
   * identity of labels it no longer has.
   */
  #resolvePod(key: string): Promise<void> {
    const store = this.#store;
    const pod = this.#rawPods.get(key);
    if (store === undefined || pod === undefined) return Promise.resolve();
    const namespace = pod.metadata.namespace ?? 'default';
    const nsLabels = namespaceLabels(namespace, this.#namespaces.get(namespace));
    const labels = identityLabels(namespace, pod.metadata.labels, nsLabels);
    const identity = store.lookup(labels);
    if (identity !== undefined) {
      this.#unresolved.delete(key);
      this.#setPod(pod, identity, nsLabels);
      return Promise.resolve();
    }
    this.#unresolved.add(key);
    return store.allocate(labels).then(
      () => {
        this.#o.metrics.allocations.inc({ outcome: 'ok' });
        if (this.#stopped || !this.#unresolved.has(key)) return;
        // The pod may have changed meanwhile: resolve whatever it is now.
        const again = this.#rawPods.get(key);
        if (again === undefined) return;
        const ns = again.metadata.namespace ?? 'default';
        const nsl = namespaceLabels(ns, this.#namespaces.get(ns));
        const id = store.lookup(identityLabels(ns, again.metadata.labels, nsl));
        if (id === undefined) {
          void this.#resolvePod(key);
          return;
        }
        this.#unresolved.delete(key);
        this.#setPod(again, id, nsl);
        this.#changed();
      },
      (err: unknown) => {
        this.#o.metrics.allocations.inc({ outcome: 'failed' });
        this.#o.logger.warn({ err, pod: key }, 'no identity for the pod yet; will retry');
        this.#scheduleRetry();
      },
    );
  }

  #setPod(pod: PodObject, identity: number, nsLabels: Labels): void {
    const namespace = pod.metadata.namespace ?? 'default';
    const name = pod.metadata.name;
    const input: PodInput = {
      namespace,
      name,
      uid: pod.metadata.uid,
      node: pod.spec.nodeName,
      identity,
      labels: pod.metadata.labels,
      nsLabels,
      ports: containerPorts(pod),
      ips: podAddresses(pod),
    };
    this.#engine.upsertPod(input);
    this.#publishPodIdentity(input);
    this.#o.metrics.pods.set(this.#engine.podCount);
  }

  #publishPodIdentity(p: PodInput): boolean {
    return this.#podIdentities.upsert(policyPodSubject(p.namespace, p.name), {
      op: 'upsert',
      namespace: p.namespace,
      name: p.name,
      uid: p.uid,
      identity: p.identity,
      ...(p.node === undefined ? {} : { node: p.node }),
    });
  }

  #scheduleRetry(): void {
    if (this.#stopped || this.#retryTimer !== undefined) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      for (const key of [...this.#unresolved]) void this.#resolvePod(key);
    }, 1000);
    this.#retryTimer.unref();
  }

  /** An identity was allocated, or freed (by this replica's gc or another's). */
  #identityChanged(identity: number, labels: readonly string[] | undefined): void {
    const subject = policyIdentitySubject(identity);
    this.#o.metrics.identities.set(this.#store?.all().size ?? 0);
    if (labels !== undefined) {
      this.#identities.upsert(subject, { op: 'upsert', identity, labels: [...labels] });
      return;
    }
    const last = this.#identities.held(subject);
    this.#identities.remove(subject, {
      op: 'delete',
      identity,
      labels: labelsOfHeld(last),
    });
    // Pods still on a freed number (a race with another replica's gc) get a new one.
    for (const p of this.#engine.pods()) {
      if (p.identity === identity) void this.#resolvePod(podKey(p.namespace, p.name));
    }
  }

  // ---- outputs ----

  #changed(): void {
    if (this.#stopped) return;
    this.#batch.add();
    if (this.#flushTimer !== undefined) return;
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined;
      this.#flush();
    }, this.#o.flushDelayMs);
  }

  #flush(): void {
    // The publishes are queued inside the span and carry it as their parent.
    this.#batch.runSync('policy compile', {}, (span) => {
      const started = performance.now();
      const deltas = this.#engine.drain();
      this.#o.metrics.compileSeconds.observe((performance.now() - started) / 1000);
      span.setAttribute('dyad.policy.deltas', deltas.length);
      for (const d of deltas) this.#publishDelta(d);
    });
  }

  #publishDelta(d: PolicyDelta): void {
    if (d.op === 'upsert') {
      const { namespace, name } = d.body;
      this.#nodePolicies.upsert(nodePolicySubject(d.node, namespace, name), {
        op: 'upsert',
        ...d.body,
      });
    } else {
      this.#nodePolicies.remove(nodePolicySubject(d.node, d.namespace, d.name), {
        op: 'delete',
        namespace: d.namespace,
        name: d.name,
      });
    }
  }

  /** Every output as the live state has it (the sinks send only what the stream lacks); how many were sent. */
  #publishAll(): number {
    let sent = 0;
    for (const [id, labels] of this.#store?.all() ?? []) {
      const payload = { op: 'upsert' as const, identity: id, labels: [...labels] };
      if (this.#identities.upsert(policyIdentitySubject(id), payload)) sent++;
    }
    for (const p of this.#engine.pods()) if (this.#publishPodIdentity(p)) sent++;
    for (const key of this.#accepted.keys()) if (this.#publishStatus(key)) sent++;
    for (const [, c] of this.#engine.published()) {
      const subject = nodePolicySubject(c.node, c.body.namespace, c.body.name);
      if (this.#nodePolicies.upsert(subject, { op: 'upsert', ...c.body })) sent++;
    }
    return sent;
  }

  /** Tombstones whatever the streams hold that the live state does not; how many. */
  #retainDesired(): number {
    let sent = 0;
    const ids = new Set([...(this.#store?.all().keys() ?? [])].map(policyIdentitySubject));
    sent += this.#identities.retainOnly(ids, (subject, last) => {
      const id = Number(subject.slice(subject.lastIndexOf('.') + 1));
      return Number.isSafeInteger(id)
        ? { op: 'delete', identity: id, labels: labelsOfHeld(last) }
        : undefined;
    });
    const pods = new Set(
      [...this.#engine.pods()].map((p) => policyPodSubject(p.namespace, p.name)),
    );
    sent += this.#podIdentities.retainOnly(pods, (_, last) => namedDelete(last));
    const statuses = new Set(
      [...this.#engine.policies()].map((p) => policyStatusSubject(p.namespace, p.name)),
    );
    sent += this.#statuses.retainOnly(statuses, (_, last) => namedDelete(last));
    const nodePolicies = new Set(
      [...this.#engine.published().values()].map((c) =>
        nodePolicySubject(c.node, c.body.namespace, c.body.name),
      ),
    );
    sent += this.#nodePolicies.retainOnly(nodePolicies, (subject) => {
      const pod = parseNodePolicySubject(subject);
      return pod === undefined ? undefined : { op: 'delete', ...pod };
    });
    return sent;
  }

  #readStored(): Promise<StoredOutputs> {
    return readStored(this.#o.bus);
  }

  #loadSinks(stored: StoredOutputs): void {
    this.#identities.load(upserts(stored.identities));
    this.#podIdentities.load(upserts(stored.pods));
    this.#statuses.load(upserts(stored.statuses));
    this.#nodePolicies.load(upserts(stored.nodePolicies));
  }

  #gc(): void {
    const store = this.#store;
    if (store === undefined || this.#stopped) return;
    const usage = this.#engine.identityUsage();
    store
      .gc((id) => usage.has(id))
      .then(
        (freed) => this.#o.metrics.identitiesFreed.inc(freed.length),
        (err: unknown) => this.#o.logger.warn({ err }, 'identity gc failed; will retry'),
      );
  }

  #every(ms: number, task: () => unknown): void {
    const t = setInterval(task, ms);
    t.unref();
    this.#timers.push(t);
  }
}

function statusOf(
  np: NetworkPolicyObject,
  refused: boolean,
): Extract<PayloadOf<typeof PolicyStatusEvent>, { op: 'upsert' }> {
  const spec = normalizePolicy(np);
  const problems = [...spec.problems];
  if (refused) {
    problems.unshift({
      code: PolicyProblemCode.updateRefused,
      path: '',
      message: `a newer version did not decode and was dead-lettered: resourceVersion ${spec.resourceVersion} stays enforced`,
    });
  }
  return {
    op: 'upsert',
    namespace: spec.namespace,
    name: spec.name,
    uid: spec.uid,
    resourceVersion: spec.resourceVersion,
    problems,
    accepted: np,
  };
}

function labelsOfHeld(last: unknown): string[] {
  if (typeof last === 'object' && last !== null && 'labels' in last && Array.isArray(last.labels)) {
    return last.labels.filter((l): l is string => typeof l === 'string');
  }
  return [];
}

function namedDelete(last: unknown): { op: 'delete'; namespace: string; name: string } | undefined {
  if (typeof last !== 'object' || last === null) return undefined;
  const ns = 'namespace' in last ? last.namespace : undefined;
  const name = 'name' in last ? last.name : undefined;
  return typeof ns === 'string' && typeof name === 'string'
    ? { op: 'delete', namespace: ns, name }
    : undefined;
}

/** What the four output streams hold now, last value per subject. */
export async function readStored(bus: Bus) {
  const [identities, pods, statuses, nodePolicies] = await Promise.all([
    bus.snapshot([IdentityEvent], {
      stream: POLICY_STREAM,
      filterSubjects: [PolicyFilter.identities],
    }),
    bus.snapshot([PodIdentityEvent], {
      stream: POLICY_STREAM,
      filterSubjects: [PolicyFilter.pods],
    }),
    bus.snapshot([PolicyStatusEvent], {
      stream: POLICY_STREAM,
      filterSubjects: [PolicyFilter.statuses],
    }),
    bus.snapshot([PodPolicyDesiredV2], {
      stream: NODE_DESIRED_STREAM,
      filterSubjects: [ALL_NODES_POLICY_FILTER],
    }),
  ]);
  return { identities, pods, statuses, nodePolicies };
}

export type StoredOutputs = Awaited<ReturnType<typeof readStored>>;
