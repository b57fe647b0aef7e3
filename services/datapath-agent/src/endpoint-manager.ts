import type { InputOf, JsPublishOptions } from '@dyad/bus';
import type { MessageContract } from '@dyad/contracts';
import type { Family } from '@dyad/netaddr';
import { withSpan } from '@dyad/telemetry';
import type { CniBackend } from './cni/handler.ts';
import type { AddRequest, CheckRequest, DelRequest, GcRequest, PodRef } from './cni/request.ts';
import { CniCode } from './cni/spec.ts';
import type { DatapathReconciler } from './datapath/reconciler.ts';
import type { NodeDatapath } from './datapath/node.ts';
import { addressesOf, endpointEntries, podKey } from './datapath/desired-maps.ts';
import type { EndpointView } from './datapath/desired-maps.ts';
import {
  attachmentKey,
  endpointKey,
  endpointMacs,
  hostIfName,
  nextEndpointId,
} from './endpoint.ts';
import type { Endpoint, EndpointAddress } from './endpoint.ts';
import { CniError, NetlinkError } from './errors.ts';
import type { PodPlumber } from './plumber.ts';
import type { StoredEndpoint } from './state.ts';

export interface AgentLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * Publishes the newest message of a subject of a last-value stream, retried while NATS is away,
 * never waited for (the agent's records: endpoints, allocations, held blocks).
 */
export type PublishLatest = <C extends MessageContract>(
  contract: C,
  subject: string,
  payload: InputOf<C>,
  opts?: JsPublishOptions,
) => void;

/** Where endpoint changes are announced (NATS in the service; a list in tests). */
export interface EndpointReporter {
  upsert(ep: Endpoint): void;
  remove(ep: Endpoint): void;
}

export interface Allocated {
  readonly ipv4?: EndpointAddress;
  readonly ipv6?: EndpointAddress;
}

/** A pod sandbox's addresses as the node allocator hands them out (ipam/node-ipam.ts). */
export interface PodAddressing {
  /** Why no address can be given now (no block yet, rebuilding), or undefined. */
  blocker(): string | undefined;
  /**
   * Addresses for the container: the same again for a repeat. Changes memory only: the caller
   * commits the state file before it uses them. Throws a CniError (no block, exhausted, the
   * container id held for another pod, a family the cluster does not have).
   */
  allocate(req: {
    readonly containerId: string;
    readonly pod: PodRef;
    readonly families?: readonly Family[];
  }): Promise<Allocated>;
  /** Frees what the container holds; false when it held nothing. Memory only, as allocate. */
  release(containerId: string): boolean;
  /** Container ids holding addresses. */
  holders(): string[];
  /** The allocation or release of a container is durable: tell whoever listens. */
  announce(containerId: string): void;
}

export interface EndpointManagerOptions {
  readonly node: string;
  readonly vethPrefix: string;
  /** Identity of an endpoint until the router names one for its address. */
  readonly initIdentity: number;
  readonly datapath: NodeDatapath;
  readonly plumber: PodPlumber;
  readonly reconciler: DatapathReconciler;
  readonly addressing: PodAddressing;
  /** Makes the state file (endpoints and allocations) durable; concurrent calls share writes. */
  readonly commit: () => Promise<void>;
  readonly reporter: EndpointReporter;
  readonly logger: AgentLogger;
  readonly now?: () => Date;
}

/** What a restore found and did, for logs and tests. */
export interface RestoreReport {
  readonly kept: number;
  readonly replumbed: number;
  readonly removed: number;
  readonly rolledBack: number;
  readonly staleLinks: number;
  readonly reattached: number;
}

function samePod(a: PodRef, b: PodRef): boolean {
  return (
    a.namespace === b.namespace &&
    a.name === b.name &&
    (a.uid === undefined || b.uid === undefined || a.uid === b.uid)
  );
}

/** Milliseconds spent per phase of an operation, for the debug log (where ADD time goes). */
function phaseClock(): ((phase: string) => void) & { all(): Record<string, number> } {
  let last = process.hrtime.bigint();
  const out: Record<string, number> = {};
  const mark = (phase: string) => {
    const now = process.hrtime.bigint();
    out[phase] = Number(now - last) / 1e6;
    last = now;
  };
  return Object.assign(mark, { all: () => out });
}

function cniFailure(e: unknown, what: string): CniError {
  if (e instanceof CniError) return e;
  if (e instanceof NetlinkError)
    return new CniError(CniCode.internal, `${what}: netlink`, e.message, { cause: e });
  return new CniError(
    CniCode.internal,
    what,
    e instanceof Error ? `${e.name}: ${e.message}` : String(e),
    { cause: e },
  );
}

/**
 * The node's endpoints through their CNI life: ADD, DEL, CHECK and GC, one at a time per
 * container, and the restore after a start. It decides; the plumber makes interfaces, the node
 * allocator hands out addresses, the reconciler writes the maps, and the state file is
 * committed before any answer that depends on it.
 */
export class EndpointManager implements CniBackend {
  readonly #o: EndpointManagerOptions;
  readonly #endpoints = new Map<string, StoredEndpoint>();
  readonly #locks = new Map<string, Promise<unknown>>();
  #restored = false;

  constructor(opts: EndpointManagerOptions) {
    this.#o = opts;
  }

  get restored(): boolean {
    return this.#restored;
  }

  endpoints(): StoredEndpoint[] {
    return [...this.#endpoints.values()];
  }

  ready(): StoredEndpoint[] {
    return this.endpoints().filter((e) => e.phase === 'ready');
  }

  /** The reconciler found an endpoint's identity or policy flags changed. */
  applyView(ep: Endpoint, view: EndpointView): void {
    const key = endpointKey(ep);
    const cur = this.#endpoints.get(key);
    if (!cur || cur.phase !== 'ready') return;
    const next: StoredEndpoint = { ...cur, ...view };
    this.#endpoints.set(key, next);
    this.#o.reporter.upsert(next);
    this.#o
      .commit()
      .catch((err: unknown) =>
        this.#o.logger.error({ err, key }, 'state file not written after an identity change'),
      );
  }

  // ---- CNI ----

  status(): { ready: boolean; details: string } {
    if (!this.#restored) return { ready: false, details: 'restoring endpoints after start' };
    const blocker = this.#o.addressing.blocker();
    if (blocker) return { ready: false, details: blocker };
    return { ready: true, details: 'ready' };
  }

  async add(req: AddRequest): Promise<Endpoint> {
    const s = this.status();
    if (!s.ready) throw new CniError(CniCode.tryAgainLater, 'dyad agent not ready', s.details);
    // the container's lock: its addresses are per container, whatever the interface
    return this.#withLock(req.containerId, () => this.#add(req));
  }

  async del(req: DelRequest): Promise<void> {
    this.#requireRestored();
    await this.#withLock(req.containerId, () => this.#del(req.containerId, req.ifName));
  }

  async check(req: CheckRequest): Promise<void> {
    this.#requireRestored();
    await this.#withLock(req.containerId, () => this.#check(req));
  }

  /**
   * Removes every endpoint of this network the runtime no longer lists, as DEL does, and frees
   * addresses held by containers that have no endpoint and are not listed (an ADD that died
   * between allocation and its intent cannot leave such a holder, but an adopted one can).
   */
  async gc(req: GcRequest): Promise<void> {
    this.#requireRestored();
    const valid = new Set(req.valid.map((a) => attachmentKey(a.containerId, a.ifName)));
    const validContainers = new Set(req.valid.map((a) => a.containerId));
    const errors: CniError[] = [];
    for (const ep of this.endpoints()) {
      if (ep.network !== req.conf.name || valid.has(endpointKey(ep))) continue;
      try {
        await this.#withLock(ep.containerId, () => this.#del(ep.containerId, ep.ifName));
        this.#o.logger.info(
          { containerId: ep.containerId, ifName: ep.ifName },
          'GC removed endpoint',
        );
      } catch (e) {
        errors.push(cniFailure(e, 'GC'));
      }
    }
    for (const containerId of this.#o.addressing.holders()) {
      if (validContainers.has(containerId)) continue;
      await this.#withLock(containerId, async () => {
        if (this.#hasContainer(containerId) || !this.#o.addressing.release(containerId)) return;
        await this.#o.commit();
        this.#o.addressing.announce(containerId);
        this.#o.logger.info(
          { containerId },
          'GC released addresses of a container without endpoint',
        );
      });
    }
    if (errors.length > 0) {
      throw new CniError(
        CniCode.internal,
        `GC could not remove ${errors.length} endpoint(s)`,
        errors.map((e) => `${e.message}: ${e.details}`).join('; '),
      );
    }
  }

  #hasContainer(containerId: string): boolean {
    for (const ep of this.#endpoints.values()) if (ep.containerId === containerId) return true;
    return false;
  }

  #requireRestored(): void {
    if (!this.#restored)
      throw new CniError(
        CniCode.tryAgainLater,
        'dyad agent not ready',
        'restoring endpoints after start',
      );
  }

  async #withLock<T>(key: string, fn: () => T | Promise<T>): Promise<T> {
    const prev = this.#locks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.#locks.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.#locks.get(key) === tail) this.#locks.delete(key);
    }
  }

  #refuseConflicts(req: AddRequest): StoredEndpoint | undefined {
    const key = attachmentKey(req.containerId, req.ifName);
    const existing = this.#endpoints.get(key);
    for (const ep of this.#endpoints.values()) {
      if (ep.containerId !== req.containerId) continue;
      if (!samePod(ep.pod, req.pod))
        throw new CniError(
          CniCode.invalidEnvironment,
          'CNI_CONTAINERID is in use by another pod',
          `container ${req.containerId} (${ep.ifName}) is attached to pod ${podKey(ep.pod)}, not ${podKey(req.pod)}`,
        );
      if (ep.netns !== req.netns)
        throw new CniError(
          CniCode.invalidEnvironment,
          'CNI_CONTAINERID is attached in another network namespace',
          `container ${req.containerId} (${ep.ifName}) is attached in ${ep.netns}, not ${req.netns}`,
        );
    }
    return existing;
  }

  async #add(req: AddRequest): Promise<Endpoint> {
    const key = attachmentKey(req.containerId, req.ifName);
    // a repeated ADD (the runtime retried after a timeout): same answer
    const existing = this.#refuseConflicts(req);
    if (existing?.phase === 'ready') return existing;

    const startedAt = Date.now();
    const pod = this.#o.plumber.openPod(req.netns);
    const mark = phaseClock();
    try {
      if (this.#o.plumber.podHasLink(pod, req.ifName))
        throw new CniError(
          CniCode.interfaceExists,
          'interface already exists in the container',
          `${req.ifName} exists in ${req.netns}`,
        );
      const fresh = !this.#o.addressing.holders().includes(req.containerId);
      const allocated = await withSpan('ipam allocate', () =>
        this.#o.addressing.allocate({
          containerId: req.containerId,
          pod: req.pod,
          ...(req.conf.ipFamilies ? { families: req.conf.ipFamilies } : {}),
        }),
      );
      mark('allocate');
      const macs = endpointMacs(req.containerId, req.ifName);
      const intent: StoredEndpoint = {
        phase: 'adding',
        containerId: req.containerId,
        ifName: req.ifName,
        network: req.conf.name,
        netns: req.netns,
        pod: req.pod,
        endpointId: nextEndpointId(this.endpoints().map((e) => e.endpointId)),
        mac: macs.pod,
        hostIfName: hostIfName(this.#o.vethPrefix, req.containerId, req.ifName),
        hostIfindex: 0,
        hostMac: macs.host,
        mtu: req.conf.mtu,
        identity: this.#o.initIdentity,
        flags: 0,
        createdAt: (this.#o.now?.() ?? new Date()).toISOString(),
        ...allocated,
      };
      // the allocation and the intent on disk before the kernel hears of them: an agent killed
      // from here on finds the intent and undoes it on restart
      this.#endpoints.set(key, intent);
      try {
        await this.#o.commit();
      } catch (e) {
        this.#endpoints.delete(key);
        if (fresh) this.#o.addressing.release(req.containerId);
        throw cniFailure(e, 'ADD failed: state file not written');
      }
      mark('intent');
      if (fresh) this.#o.addressing.announce(req.containerId);
      try {
        const hostIfindex = this.#o.plumber.plumb(pod, intent);
        mark('netlink');
        const ep: StoredEndpoint = { ...intent, hostIfindex, phase: 'ready' };
        this.#endpoints.set(key, ep);
        // the result is returned only once a restart would keep the endpoint. The write runs
        // while the maps and programs are set up: a restart that finds the endpoint ready with
        // its veth re-attaches what is missing and writes the maps anyway
        const durable = this.#o.commit();
        durable.catch(() => undefined); // awaited below; a failure there rolls back
        this.#o.reconciler.markEndpoint(ep);
        await this.#o.reconciler.flush();
        mark('maps');
        this.#o.plumber.attach(hostIfindex);
        mark('tc');
        await durable;
        mark('state');
        const done = this.#endpoints.get(key) ?? ep;
        this.#o.reporter.upsert(done);
        // one line per pod, as the kubelet logs its pod starts: when the ADD began (epoch ms)
        // and where its time went; `npm run bench -- lab -- --kubelet` splits pod start-up by it
        this.#o.logger.info(
          {
            containerId: req.containerId,
            ifName: req.ifName,
            pod: req.pod,
            startedAt,
            ms: mark.all(),
          },
          'ADD done',
        );
        return done;
      } catch (e) {
        await this.#rollback(intent);
        throw cniFailure(e, 'ADD failed');
      }
    } finally {
      this.#o.plumber.closePod(pod);
    }
  }

  /** Undoes a failed ADD: no veth, no map entry, no address left behind. */
  async #rollback(intent: StoredEndpoint): Promise<void> {
    const key = endpointKey(intent);
    try {
      this.#o.plumber.removeHostLink(intent.hostIfName);
    } catch (e) {
      this.#o.logger.error({ err: e, key }, 'rollback of a failed ADD could not remove the veth');
    }
    this.#endpoints.delete(key);
    this.#o.reconciler.markEndpoint(intent);
    await this.#o.reconciler
      .flush()
      .catch((e: unknown) =>
        this.#o.logger.error({ err: e, key }, 'rollback of a failed ADD could not clean the maps'),
      );
    await this.#forget(intent.containerId);
  }

  /** Frees the container's addresses once no endpoint of it is left, durably, and says so. */
  async #forget(containerId: string): Promise<void> {
    const freed = !this.#hasContainer(containerId) && this.#o.addressing.release(containerId);
    await this.#o.commit();
    if (freed) this.#o.addressing.announce(containerId);
  }

  async #del(containerId: string, ifName: string): Promise<void> {
    const key = attachmentKey(containerId, ifName);
    const ep = this.#endpoints.get(key);
    const mark = phaseClock();
    if (ep) {
      this.#endpoints.delete(key);
      this.#o.reconciler.markEndpoint(ep);
      await this.#o.reconciler.flush();
      mark('maps');
    }
    // an unknown container: a leftover veth by its derived name
    this.#o.plumber.removeHostLink(
      ep?.hostIfName ?? hostIfName(this.#o.vethPrefix, containerId, ifName),
    );
    mark('netlink');
    // released only now: until the veth is gone its pod still holds the addresses
    await this.#forget(containerId);
    mark('state');
    if (ep) this.#o.reporter.remove(ep);
    this.#o.logger.debug({ containerId, ifName, ms: mark.all() }, 'DEL done');
  }

  #check(req: CheckRequest): void {
    const ep = this.#endpoints.get(attachmentKey(req.containerId, req.ifName));
    if (!ep || ep.phase !== 'ready')
      throw new CniError(
        CniCode.unknownContainer,
        'unknown container',
        `no endpoint for container ${req.containerId} interface ${req.ifName} on node ${this.#o.node}`,
      );
    const problems: string[] = [];
    if (ep.netns !== req.netns) problems.push(`attached in ${ep.netns}, CHECK names ${req.netns}`);
    for (const ip of req.prevResult?.ips ?? []) {
      const addr = ip.address.split('/')[0] ?? '';
      const iface =
        ip.interface === undefined ? undefined : req.prevResult?.interfaces[ip.interface];
      if (iface && iface.name !== ep.ifName) continue;
      if (!addressesOf(ep).includes(addr))
        problems.push(`prevResult address ${ip.address} is not the endpoint's`);
    }
    problems.push(...this.#o.plumber.inspect(ep));
    for (const address of addressesOf(ep)) {
      const inKernel = this.#o.datapath.endpoints.map.lookup({ address });
      if (!inKernel) problems.push(`endpoint map has no entry for ${address}`);
      else if (JSON.stringify(inKernel) !== JSON.stringify(endpointEntries(ep, ep)[0]?.[1]))
        problems.push(`endpoint map entry for ${address} differs: ${JSON.stringify(inKernel)}`);
    }
    if (problems.length > 0)
      throw new CniError(
        CniCode.checkFailed,
        'endpoint is not as ADD left it',
        problems.join('; '),
      );
  }

  // ---- restore ----

  /**
   * Rebuilds the endpoint table from the state file and the kernel after a start: keeps what is
   * healthy without writing it again, repairs what is missing, removes what is stale. The node
   * allocator has been restored from the same file before this runs.
   */
  async restore(
    endpoints: readonly StoredEndpoint[],
    objectChanged: boolean,
  ): Promise<RestoreReport> {
    const report = {
      kept: 0,
      replumbed: 0,
      removed: 0,
      rolledBack: 0,
      staleLinks: 0,
      reattached: 0,
    };
    const links = new Map(this.#o.plumber.hostLinks().map((l) => [l.name, l]));
    const gone: StoredEndpoint[] = [];
    for (const ep of endpoints) {
      const key = endpointKey(ep);
      const link = links.get(ep.hostIfName);
      links.delete(ep.hostIfName);
      if (ep.phase === 'adding') {
        // died mid-ADD: undo; the runtime retries the ADD
        this.#o.plumber.removeHostLink(ep.hostIfName);
        this.#o.reconciler.markEndpoint(ep);
        report.rolledBack++;
        continue;
      }
      if (link && link.kind === 'veth') {
        const att = this.#o.datapath.attached(link.index);
        if (objectChanged || att.ingress === undefined || att.egress === undefined) {
          this.#o.plumber.attach(link.index);
          report.reattached++;
        }
        this.#endpoints.set(key, { ...ep, hostIfindex: link.index });
        report.kept++;
        continue;
      }
      const repaired = this.#replumb(ep);
      if (repaired) {
        this.#endpoints.set(key, repaired);
        report.replumbed++;
      } else {
        gone.push(ep);
        this.#o.reconciler.markEndpoint(ep);
        report.removed++;
      }
    }
    // veths that look like ours but belong to no endpoint
    const ours = new RegExp(`^${this.#o.vethPrefix}[0-9a-f]{${15 - this.#o.vethPrefix.length}}$`);
    for (const l of links.values()) {
      if (l.kind === 'veth' && ours.test(l.name)) {
        this.#o.plumber.removeHostLink(l.name);
        report.staleLinks++;
      }
    }
    // addresses of what is gone return to the blocks
    for (const ep of endpoints)
      if (!this.#hasContainer(ep.containerId) && this.#o.addressing.release(ep.containerId))
        this.#o.addressing.announce(ep.containerId);
    this.#o.reconciler.markAll();
    await this.#o.reconciler.flush();
    await this.#o.commit();
    this.#restored = true;
    for (const ep of gone) this.#o.reporter.remove(ep);
    this.#o.logger.info({ ...report, writes: this.#o.datapath.stats() }, 'endpoints restored');
    return report;
  }

  /** Re-creates the veth of an endpoint whose pod still exists; undefined when the pod is gone. */
  #replumb(ep: StoredEndpoint): StoredEndpoint | undefined {
    const pod = this.#o.plumber.tryOpenPod(ep.netns);
    if (!pod) return undefined;
    try {
      const hostIfindex = this.#o.plumber.plumb(pod, ep);
      this.#o.plumber.attach(hostIfindex);
      return { ...ep, hostIfindex };
    } catch (e) {
      this.#o.logger.warn(
        { err: e, containerId: ep.containerId },
        'could not re-create an endpoint',
      );
      this.#o.plumber.removeHostLink(ep.hostIfName);
      return undefined;
    } finally {
      this.#o.plumber.closePod(pod);
    }
  }
}
