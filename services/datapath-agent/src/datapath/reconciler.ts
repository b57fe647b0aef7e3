import { context } from '@opentelemetry/api';
import { TraceBatch } from '@dyad/telemetry';
import type { Endpoint } from '../endpoint.ts';
import { endpointKey } from '../endpoint.ts';
import {
  addressesOf,
  canonicalPrefix,
  desiredMaps,
  endpointEntries,
  endpointView,
  knownPolicy,
  localIpcacheEntries,
  podKey,
  policyEntries,
  prefixesOf,
} from './desired-maps.ts';
import type { DesiredInputs, EndpointView } from './desired-maps.ts';
import type { IpcacheInfo, IpcacheKey } from '@dyad/libbpf-ts';
import type { MirroredMap } from './mirror.ts';
import { LbIds, backendName, desiredLb, frontendName } from './desired-lb.ts';
import type { NodeDatapath } from './node.ts';
import type { Schedule } from './schedule.ts';

export interface ReconcilerOptions {
  readonly datapath: NodeDatapath;
  /** The inputs as they are now; read at every pass. */
  readonly inputs: () => DesiredInputs;
  /** An endpoint's identity or policy flags changed (the caller stores and reports it). */
  readonly onView: (ep: Endpoint, view: EndpointView) => void;
  /** When a marked change is written if nobody flushes first (coalescing). */
  readonly schedule: Schedule;
  readonly onError: (err: unknown) => void;
  /** How long a pass took (a full one after markAll, else partial). */
  readonly onPass?: (seconds: number, kind: 'full' | 'partial') => void;
}

/**
 * The one place that writes the datapath maps. Everything else only marks what changed (an
 * endpoint, a prefix, a pod's policy, or everything); a pass computes the desired entries of
 * what is marked (desired-maps.ts) and queues them on the maps' mirrors, which drop what the
 * kernel already holds and send the rest as batches. CNI operations call flush() and wait for the
 * kernel; other changes are written after the schedule's quiet period.
 */
export class DatapathReconciler {
  readonly #o: ReconcilerOptions;
  #all = false;
  /** Endpoints as they were when marked: a removed one still names what it had. */
  #endpoints = new Map<string, Endpoint>();
  #prefixes = new Set<string>();
  #pods = new Set<string>();
  #services = false;
  #lbIds: LbIds | undefined;
  /** The traces of what was marked since the last pass: a CNI call, router or policy messages. */
  readonly #batch = new TraceBatch();
  readonly #pass = (): void => {
    this.flush().catch(this.#o.onError);
  };

  constructor(opts: ReconcilerOptions) {
    this.#o = opts;
  }

  markAll(): void {
    this.#all = true;
    this.#batch.add();
    this.#o.schedule(this.#pass);
  }

  /** An endpoint was added, changed or removed; pass it as it was if it is gone. */
  markEndpoint(ep: Endpoint): void {
    this.#endpoints.set(endpointKey(ep), ep);
    this.#batch.add();
    this.#o.schedule(this.#pass);
  }

  markPrefix(prefix: string): void {
    this.#prefixes.add(canonicalPrefix(prefix));
    this.#batch.add();
    this.#o.schedule(this.#pass);
  }

  markPod(namespace: string, name: string): void {
    this.#pods.add(podKey({ namespace, name }));
    this.#batch.add();
    this.#o.schedule(this.#pass);
  }

  /** The node's Services changed. */
  markServices(): void {
    this.#services = true;
    this.#batch.add();
    this.#o.schedule(this.#pass);
  }

  /**
   * Writes what is marked now; resolves once the kernel holds it. The write's span is a child of
   * the caller's (a CNI call waiting for its pod's entries stays one trace, whichever input
   * reached the batch first; the inputs are linked).
   */
  async flush(): Promise<void> {
    return this.#batch.run('datapath write', {}, () => this.#write(), context.active());
  }

  async #write(): Promise<void> {
    const all = this.#all;
    const endpoints = this.#endpoints;
    const prefixes = this.#prefixes;
    const pods = this.#pods;
    const services = this.#services || all;
    this.#services = false;
    this.#all = false;
    this.#endpoints = new Map();
    this.#prefixes = new Set();
    this.#pods = new Set();
    const started = performance.now();
    const inputs = this.#o.inputs();
    const writes: Array<Promise<void>> = [];
    if (all) this.#full(inputs, writes);
    else this.#partial(inputs, endpoints, prefixes, pods, writes);
    if (services) this.#lb(inputs, writes);
    this.#o.datapath.flush();
    await Promise.all(writes);
    this.#o.onPass?.((performance.now() - started) / 1000, all ? 'full' : 'partial');
  }

  /** The LB maps as a whole (a few entries per Service); the mirrors drop what is unchanged. */
  #lb(inputs: DesiredInputs, writes: Array<Promise<void>>): void {
    if (inputs.services?.synced !== true) return;
    const dp = this.#o.datapath;
    const ids = (this.#lbIds ??= seedLbIds(this.#o.datapath));
    const want = desiredLb(inputs.services, ids);
    const keep = {
      services: new Set(want.services.map(([k]) => dp.lbServices.keyId(k))),
      maglev: new Set(want.maglev.map(([id]) => id)),
      backends: new Set(want.backends.map(([id]) => id)),
    };
    for (const [k, v] of want.services) writes.push(dp.lbServices.set(k, v));
    for (const [k, v] of want.maglev) writes.push(dp.lbMaglev.set(k, v));
    for (const [k, v] of want.backends) writes.push(dp.lbBackends.set(k, v));
    for (const [k] of dp.lbServices.entries())
      if (!keep.services.has(dp.lbServices.keyId(k))) writes.push(dp.lbServices.delete(k));
    for (const [k] of dp.lbMaglev.entries())
      if (!keep.maglev.has(k)) writes.push(dp.lbMaglev.delete(k));
    for (const [k] of dp.lbBackends.entries())
      if (!keep.backends.has(k)) writes.push(dp.lbBackends.delete(k));
    ids.retain(
      new Set(want.services.map(([k]) => frontendName(k))),
      new Set(want.backends.map(([, b]) => backendName(b))),
    );
  }

  #view(ep: Endpoint, inputs: DesiredInputs): EndpointView {
    const view = endpointView(ep, inputs);
    if (view.identity !== ep.identity || view.flags !== ep.flags) this.#o.onView(ep, view);
    return view;
  }

  #full(inputs: DesiredInputs, writes: Array<Promise<void>>): void {
    const dp = this.#o.datapath;
    const want = desiredMaps(inputs);
    for (const ep of inputs.endpoints) this.#view(ep, inputs);
    // conntrack tables before endpoint entries: the datapath tracks nothing for an endpoint
    // without one, so replies to its first flows would meet its default deny
    const liveIds = new Set(inputs.endpoints.map((e) => e.endpointId));
    for (const id of liveIds) dp.conntrack.ensure(id);
    for (const id of dp.conntrack.endpointIds()) if (!liveIds.has(id)) dp.conntrack.remove(id);
    const wantEndpoints = new Set<string>();
    for (const [k, v] of want.endpoints) {
      wantEndpoints.add(dp.endpoints.keyId(k));
      writes.push(dp.endpoints.set(k, v));
    }
    for (const [k] of dp.endpoints.entries())
      if (!wantEndpoints.has(dp.endpoints.keyId(k))) writes.push(dp.endpoints.delete(k));

    // cluster-sized: written as it is computed, in chunks, and what goes is found by lookup
    writes.push(dp.ipcache.writeAll(want.ipcache));
    if (want.ipcacheComplete)
      for (const [k] of dp.ipcache.entries())
        if (!want.ipcache.has(k.prefix)) writes.push(dp.ipcache.delete(k));

    // an endpoint whose policy is unknown keeps the entries it had (fail closed); entries of
    // endpoints that are gone, or beyond what a known policy calls for, go
    const stale = (id: number) => !liveIds.has(id) || want.policyKnown.has(id);
    replaceAll(dp.policy, want.policy, (k) => stale(k.endpointId), writes);
    replaceAll(dp.policyCidr, want.policyCidr, (k) => stale(k.endpointId), writes);
  }

  #partial(
    inputs: DesiredInputs,
    marked: ReadonlyMap<string, Endpoint>,
    prefixes: Set<string>,
    pods: ReadonlySet<string>,
    writes: Array<Promise<void>>,
  ): void {
    const dp = this.#o.datapath;
    const byKey = new Map(inputs.endpoints.map((e) => [endpointKey(e), e]));
    const byPrefix = new Map<string, Endpoint>();
    const addresses = new Set<string>();
    const ids = new Set<number>();
    for (const ep of inputs.endpoints) {
      for (const p of prefixesOf(ep)) byPrefix.set(p, ep);
      for (const a of addressesOf(ep)) addresses.add(dp.endpoints.keyId({ address: a }));
      ids.add(ep.endpointId);
    }

    const targets = new Map<string, Endpoint>();
    const goneAddresses: string[] = [];
    const goneIds = new Set<number>();
    for (const [key, old] of marked) {
      const cur = byKey.get(key);
      if (cur) targets.set(key, cur);
      for (const a of addressesOf(old))
        if (!addresses.has(dp.endpoints.keyId({ address: a }))) goneAddresses.push(a);
      for (const p of prefixesOf(old)) prefixes.add(p);
      if (!ids.has(old.endpointId)) goneIds.add(old.endpointId);
    }
    for (const ep of inputs.endpoints)
      if (pods.has(podKey(ep.pod))) targets.set(endpointKey(ep), ep);
    for (const p of prefixes) {
      const local = byPrefix.get(p);
      if (local) targets.set(endpointKey(local), local);
    }

    for (const id of goneIds) dp.conntrack.remove(id);
    for (const ep of targets.values()) {
      const view = this.#view(ep, inputs);
      dp.conntrack.ensure(ep.endpointId);
      for (const [k, v] of endpointEntries(ep, view)) writes.push(dp.endpoints.set(k, v));
      for (const [k, v] of localIpcacheEntries(ep, view, inputs.nodeId))
        writes.push(dp.ipcache.set(k, v));
      if (knownPolicy(ep, inputs.policy)) {
        const wanted = policyEntries(ep, inputs.policy);
        const mine = (k: { endpointId: number }) => k.endpointId === ep.endpointId;
        replaceAll(dp.policy, wanted.policy, mine, writes);
        replaceAll(dp.policyCidr, wanted.cidr, mine, writes);
      }
    }
    for (const a of goneAddresses)
      if (dp.endpoints.has({ address: a })) writes.push(dp.endpoints.delete({ address: a }));
    // a prefix no local endpoint has: the router's word, else nothing (a burst of router
    // updates is thousands of prefixes: one promise for them, not one each)
    writes.push(dp.ipcache.writeAll(routerIpcache(prefixes, byPrefix, inputs.router, dp.ipcache)));
    if (goneIds.size > 0) {
      const gone = (k: { endpointId: number }) => goneIds.has(k.endpointId);
      replaceAll(dp.policy, [], gone, writes);
      replaceAll(dp.policyCidr, [], gone, writes);
    }
  }
}

/** The ipcache entries of prefixes no local endpoint has: the router's, else a delete. */
function* routerIpcache(
  prefixes: Iterable<string>,
  local: ReadonlyMap<string, Endpoint>,
  router: DesiredInputs['router'],
  ipcache: MirroredMap<IpcacheKey, IpcacheInfo>,
): Generator<readonly [IpcacheKey, IpcacheInfo | undefined]> {
  for (const p of prefixes) {
    if (local.has(p)) continue;
    const info = router.entries.get(p);
    if (info) yield [{ prefix: p }, info];
    else if (ipcache.has({ prefix: p })) yield [{ prefix: p }, undefined];
  }
}

/** Writes `wanted` and deletes every other entry of the map that `owned` says it replaces. */
function replaceAll<K, V>(
  map: MirroredMap<K, V>,
  wanted: ReadonlyArray<readonly [K, V]>,
  owned: (k: K) => boolean,
  writes: Array<Promise<void>>,
): void {
  const keep = new Set<string>();
  for (const [k, v] of wanted) {
    keep.add(map.keyId(k));
    writes.push(map.set(k, v));
  }
  for (const [k] of map.entries())
    if (owned(k) && !keep.has(map.keyId(k))) writes.push(map.delete(k));
}

/** The ids the pinned maps hold, so a restarted agent keeps them (flows name them). */
function seedLbIds(dp: NodeDatapath): LbIds {
  const ids = new LbIds();
  for (const [k, v] of dp.lbServices.entries()) ids.seed('frontend', frontendName(k), v.id);
  for (const [id, b] of dp.lbBackends.entries()) ids.seed('backend', backendName(b), id);
  return ids;
}
