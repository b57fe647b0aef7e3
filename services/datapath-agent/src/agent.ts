import { EndpointFlags, IpcacheFlags, policyKeys, PolicyAction } from '@dyad/libbpf-ts';
import type { EndpointInfo, IpcacheInfo, PolicyKey, PolicyValue } from '@dyad/libbpf-ts';
import type { AddressAllocator, Allocated } from './allocator.ts';
import { allocatorCniError, isTransient } from './allocator.ts';
import type { CniBackend } from './cni/handler.ts';
import type { AddRequest, CheckRequest, DelRequest, GcRequest, PodRef } from './cni/request.ts';
import { CniCode } from './cni/spec.ts';
import type { NodeDatapath } from './datapath/node.ts';
import {
  attachmentKey,
  endpointKey,
  endpointMacs,
  hostIfName,
  nextEndpointId,
} from './endpoint.ts';
import type { Endpoint } from './endpoint.ts';
import { CniError, NetlinkError, NetnsError } from './errors.ts';
import type { Link } from './netlink/message.ts';
import { AF_INET, AF_INET6, NUD_PERMANENT } from './netlink/message.ts';
import type { Netns } from './netlink/netns.ts';
import {
  createVeth,
  deleteLink,
  hostSideRequests,
  linkByName,
  listAddresses,
  listLinks,
  listNeighbours,
  listRoutes,
  podSideRequests,
} from './netlink/rtnl.ts';
import type { NetlinkSocket } from './netlink/socket.ts';
import type { StateStore, StoredEndpoint } from './state.ts';

export interface AgentLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Where endpoint changes are announced (NATS in the service; a list in tests). */
export interface EndpointReporter {
  upsert(ep: Endpoint): void;
  remove(ep: Endpoint): void;
}

/** The policy of one pod's endpoints, as the policy service gives it. */
export interface PodPolicy {
  readonly enforceIngress: boolean;
  readonly enforceEgress: boolean;
  readonly rules: ReadonlyArray<{
    readonly identity: number;
    readonly direction: 'ingress' | 'egress';
    readonly proto?: number;
    readonly ports?: number | { readonly from: number; readonly to: number };
    readonly action: 'allow' | 'deny';
  }>;
}

export interface AgentOptions {
  readonly node: string;
  readonly nodeId: number;
  readonly vethPrefix: string;
  /** Identity of an endpoint until the router names one for its address. */
  readonly initIdentity: number;
  readonly netns: Netns;
  readonly datapath: NodeDatapath;
  readonly allocator: AddressAllocator;
  readonly state: StateStore;
  readonly reporter: EndpointReporter;
  readonly logger: AgentLogger;
  /** Whether IPAM can be asked now (the bus is connected). */
  readonly allocatorReady: () => boolean;
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

function podKey(p: { namespace: string; name: string }): string {
  return `${p.namespace}/${p.name}`;
}

function prefixesOf(ep: Endpoint): string[] {
  const out: string[] = [];
  if (ep.ipv4) out.push(`${ep.ipv4.address}/32`);
  if (ep.ipv6) out.push(`${ep.ipv6.address}/128`);
  return out;
}

function addressesOf(ep: Endpoint): string[] {
  const out: string[] = [];
  if (ep.ipv4) out.push(ep.ipv4.address);
  if (ep.ipv6) out.push(ep.ipv6.address);
  return out;
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
 * One node's pod networking: CNI operations, the endpoint table and its state file, and the
 * datapath maps kept equal to what the endpoints and desired state call for. Operations on one
 * attachment (container id + interface) run one at a time.
 */
export class Agent implements CniBackend {
  readonly #o: AgentOptions;
  readonly #endpoints = new Map<string, StoredEndpoint>();
  readonly #locks = new Map<string, Promise<unknown>>();
  /** Router ipcache entries for this node, by ipcache key id. */
  readonly #routerIpcache = new Map<string, { prefix: string; info: IpcacheInfo }>();
  readonly #policies = new Map<string, PodPolicy>();
  /** Until the first snapshot of each, endpoints keep the identity/policy they had. */
  #routerSynced = false;
  #policySynced = false;
  #restored = false;
  #releaseTimer: NodeJS.Timeout | undefined;

  constructor(opts: AgentOptions) {
    this.#o = opts;
  }

  get restored(): boolean {
    return this.#restored;
  }

  endpoints(): StoredEndpoint[] {
    return [...this.#endpoints.values()];
  }

  // ---- CNI ----

  status(): { ready: boolean; details: string } {
    if (!this.#restored) return { ready: false, details: 'restoring endpoints after start' };
    if (!this.#o.allocatorReady()) return { ready: false, details: 'not connected to NATS (IPAM)' };
    return { ready: true, details: 'ready' };
  }

  async add(req: AddRequest): Promise<Endpoint> {
    const s = this.status();
    if (!s.ready) throw new CniError(CniCode.tryAgainLater, 'dyad agent not ready', s.details);
    const key = attachmentKey(req.containerId, req.ifName);
    // the container's lock too: the IPAM sweep releases a container's addresses under it
    return this.#withLock(containerLockKey(req.containerId), () =>
      this.#withLock(key, () => this.#add(req, key)),
    );
  }

  /** Whether an endpoint (in any phase) belongs to the container. */
  hasContainer(containerId: string): boolean {
    for (const ep of this.#endpoints.values()) if (ep.containerId === containerId) return true;
    return false;
  }

  /**
   * Releases what IPAM holds for a container this node has no endpoint for (ipam-sweep.ts); true
   * when IPAM freed something. Under the container's lock, which ADD takes as well: an ADD of that
   * container waits and then allocates afresh, instead of being handed the addresses this frees.
   */
  async releaseUnknown(containerId: string): Promise<boolean> {
    return this.#withLock(containerLockKey(containerId), async () => {
      if (!this.#restored || this.hasContainer(containerId)) return false;
      return (await this.#o.allocator.release(this.#o.node, containerId)) === 'released';
    });
  }

  async del(req: DelRequest): Promise<void> {
    this.#requireRestored();
    const key = attachmentKey(req.containerId, req.ifName);
    await this.#withLock(key, () => this.#del(req.containerId, req.ifName, key));
  }

  async check(req: CheckRequest): Promise<void> {
    this.#requireRestored();
    const key = attachmentKey(req.containerId, req.ifName);
    await this.#withLock(key, async () => this.#check(req, key));
  }

  async gc(req: GcRequest): Promise<void> {
    this.#requireRestored();
    const valid = new Set(req.valid.map((a) => attachmentKey(a.containerId, a.ifName)));
    const errors: CniError[] = [];
    for (const ep of this.endpoints()) {
      if (ep.network !== req.conf.name || valid.has(endpointKey(ep))) continue;
      const key = endpointKey(ep);
      try {
        await this.#withLock(key, () => this.#del(ep.containerId, ep.ifName, key));
        this.#o.logger.info(
          { containerId: ep.containerId, ifName: ep.ifName },
          'GC removed endpoint',
        );
      } catch (e) {
        errors.push(cniFailure(e, 'GC'));
      }
    }
    if (errors.length > 0) {
      const code = errors.every((e) => e.code === CniCode.tryAgainLater)
        ? CniCode.tryAgainLater
        : CniCode.internal;
      throw new CniError(
        code,
        `GC could not remove ${errors.length} endpoint(s)`,
        errors.map((e) => `${e.message}: ${e.details}`).join('; '),
      );
    }
  }

  #requireRestored(): void {
    if (!this.#restored)
      throw new CniError(
        CniCode.tryAgainLater,
        'dyad agent not ready',
        'restoring endpoints after start',
      );
  }

  async #withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
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

  #persist(): void {
    this.#o.state.save({
      v: 1,
      node: this.#o.node,
      objectHash: this.#o.datapath.objectHash,
      endpoints: this.endpoints(),
    });
  }

  #openNetns(path: string): number {
    const o = this.#o.netns.open(path);
    if ('fd' in o) return o.fd;
    const why =
      o.problem === 'missing'
        ? `does not exist (errno ${o.errno})`
        : o.problem === 'own-netns'
          ? "is the agent's own network namespace"
          : 'is not a network namespace';
    throw new CniError(CniCode.invalidEnvironment, 'invalid CNI_NETNS', `CNI_NETNS ${path} ${why}`);
  }

  #podSocket(fd: number, path: string): NetlinkSocket {
    try {
      return this.#o.netns.socketIn(fd);
    } catch (e) {
      if (e instanceof NetnsError)
        throw new CniError(
          CniCode.invalidEnvironment,
          'invalid CNI_NETNS',
          `CNI_NETNS ${path} is not a network namespace (setns: errno ${e.errno})`,
          { cause: e },
        );
      throw e;
    }
  }

  async #add(req: AddRequest, key: string): Promise<Endpoint> {
    const existing = this.#endpoints.get(key);
    if (existing) {
      if (!samePod(existing.pod, req.pod))
        throw new CniError(
          CniCode.invalidEnvironment,
          'CNI_CONTAINERID is in use by another pod',
          `container ${req.containerId} (${req.ifName}) is attached to pod ${podKey(existing.pod)}, not ${podKey(req.pod)}`,
        );
      if (existing.netns !== req.netns)
        throw new CniError(
          CniCode.invalidEnvironment,
          'CNI_CONTAINERID is attached in another network namespace',
          `container ${req.containerId} (${req.ifName}) is attached in ${existing.netns}, not ${req.netns}`,
        );
      // a repeated ADD (the runtime retried after a timeout): same answer
      if (existing.phase === 'ready') return existing;
      if (existing.phase === 'releasing') await this.#finishRelease(existing, key);
    }

    const fd = this.#openNetns(req.netns);
    let pod: NetlinkSocket | undefined;
    try {
      pod = this.#podSocket(fd, req.netns);
      if (linkByName(pod, req.ifName))
        throw new CniError(
          CniCode.interfaceExists,
          'interface already exists in the container',
          `${req.ifName} exists in ${req.netns}`,
        );
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
      };
      const mark = phaseClock();
      // on disk before IPAM hears of it: an agent killed from here on undoes this on restart
      this.#endpoints.set(key, intent);
      this.#persist();
      mark('intent');

      let allocated: Allocated;
      try {
        allocated = await this.#o.allocator.allocate({
          node: this.#o.node,
          namespace: req.pod.namespace,
          pod: req.pod.name,
          podUid: req.pod.uid ?? `cni-${req.containerId}`.slice(0, 128),
          containerId: req.containerId,
          ...(req.conf.ipFamilies ? { families: req.conf.ipFamilies } : {}),
        });
      } catch (e) {
        this.#endpoints.delete(key);
        this.#persist();
        throw allocatorCniError(e);
      }

      mark('ipam');
      let created = false;
      try {
        const wanted = req.conf.ipFamilies;
        if (
          (!allocated.ipv4 && !allocated.ipv6) ||
          (wanted?.includes('IPv4') && !allocated.ipv4) ||
          (wanted?.includes('IPv6') && !allocated.ipv6)
        )
          throw new CniError(
            CniCode.internal,
            'IPAM answered without the requested families',
            JSON.stringify(allocated),
          );
        const host = this.#o.netns.socketHere();
        try {
          // a leftover of an ADD that died before it was recorded
          deleteLink(host, intent.hostIfName);
          created = true;
          createVeth(host, {
            name: intent.hostIfName,
            mac: intent.hostMac,
            mtu: intent.mtu,
            peer: { name: req.ifName, mac: intent.mac, netnsFd: fd },
          });
          const hostLink = linkByName(host, intent.hostIfName);
          const podLink = linkByName(pod, req.ifName);
          if (!hostLink || !podLink)
            throw new CniError(CniCode.internal, 'veth vanished after creation', intent.hostIfName);
          host.apply(
            hostSideRequests({
              hostIfindex: hostLink.index,
              podMac: intent.mac,
              ...(allocated.ipv4 ? { ipv4: allocated.ipv4 } : {}),
              ...(allocated.ipv6 ? { ipv6: allocated.ipv6 } : {}),
            }),
          );
          pod.apply(
            podSideRequests({
              podIfindex: podLink.index,
              hostMac: intent.hostMac,
              ...(allocated.ipv4 ? { ipv4: allocated.ipv4 } : {}),
              ...(allocated.ipv6 ? { ipv6: allocated.ipv6 } : {}),
            }),
          );
          mark('netlink');
          const ep: StoredEndpoint = {
            ...intent,
            ...allocated,
            hostIfindex: hostLink.index,
            phase: 'ready',
          };
          const withIdentity = { ...ep, ...this.#desiredOf(ep) };
          await this.#writeEndpoint(withIdentity);
          mark('maps');
          this.#o.datapath.attachEndpoint(hostLink.index);
          mark('tc');
          this.#endpoints.set(key, withIdentity);
          this.#persist();
          mark('state');
          this.#o.reporter.upsert(withIdentity);
          this.#o.logger.debug(
            { containerId: req.containerId, ifName: req.ifName, ms: mark.all() },
            'ADD done',
          );
          return withIdentity;
        } finally {
          host.close();
        }
      } catch (e) {
        await this.#rollback(key, intent, allocated, created);
        throw cniFailure(e, 'ADD failed');
      }
    } finally {
      pod?.close();
      this.#o.netns.close(fd);
    }
  }

  /** Undoes a failed ADD: no veth, no map entry, no address left behind. */
  async #rollback(
    key: string,
    intent: StoredEndpoint,
    allocated: Allocated,
    created: boolean,
  ): Promise<void> {
    const partial: StoredEndpoint = { ...intent, ...allocated };
    try {
      if (created) {
        const host = this.#o.netns.socketHere();
        try {
          deleteLink(host, intent.hostIfName);
        } finally {
          host.close();
        }
      }
      await this.#removeMapEntries(partial);
    } catch (e) {
      this.#o.logger.error({ err: e, key }, 'rollback of a failed ADD could not clean the kernel');
    }
    try {
      await this.#o.allocator.release(this.#o.node, intent.containerId);
      this.#endpoints.delete(key);
    } catch (e) {
      this.#o.logger.warn({ err: e, key }, 'rollback: address release failed, will retry');
      this.#endpoints.set(key, { ...partial, phase: 'releasing' });
      this.#scheduleReleases();
    }
    this.#persist();
  }

  async #del(containerId: string, ifName: string, key: string): Promise<void> {
    const ep = this.#endpoints.get(key);
    if (!ep) {
      // unknown here: a leftover veth by its derived name, and whatever IPAM still holds
      const host = this.#o.netns.socketHere();
      try {
        deleteLink(host, hostIfName(this.#o.vethPrefix, containerId, ifName));
      } finally {
        host.close();
      }
      try {
        await this.#o.allocator.release(this.#o.node, containerId);
      } catch (e) {
        this.#o.logger.warn(
          { err: e, containerId },
          'DEL of an unknown container: IPAM release failed; the IPAM sweep will release any leftover',
        );
      }
      return;
    }
    if (ep.phase !== 'releasing') {
      await this.#teardown(ep);
      this.#endpoints.set(key, { ...ep, phase: 'releasing' });
      this.#persist();
    }
    await this.#finishRelease(ep, key);
  }

  /** Releases an endpoint's addresses; on success it is gone for good. */
  async #finishRelease(ep: StoredEndpoint, key: string): Promise<void> {
    try {
      await this.#o.allocator.release(this.#o.node, ep.containerId);
    } catch (e) {
      if (isTransient(e)) {
        this.#scheduleReleases();
        throw new CniError(
          CniCode.tryAgainLater,
          'IPAM unavailable: addresses not released yet',
          `${e instanceof Error ? e.message : String(e)}; the agent retries on its own`,
          { cause: e },
        );
      }
      this.#o.logger.warn({ err: e, key }, 'IPAM refused the release; dropping the endpoint');
    }
    this.#endpoints.delete(key);
    this.#persist();
    this.#o.reporter.remove(ep);
  }

  #scheduleReleases(): void {
    if (this.#releaseTimer) return;
    this.#releaseTimer = setTimeout(() => {
      this.#releaseTimer = undefined;
      void this.retryReleases();
    }, 5000);
    this.#releaseTimer.unref();
  }

  /** Retries the releases IPAM could not take before (also run after a restore). */
  async retryReleases(): Promise<void> {
    for (const ep of this.endpoints()) {
      if (ep.phase !== 'releasing') continue;
      const key = endpointKey(ep);
      await this.#withLock(key, async () => {
        const cur = this.#endpoints.get(key);
        if (cur?.phase === 'releasing') await this.#finishRelease(cur, key);
      }).catch(() => undefined);
    }
  }

  async #teardown(ep: StoredEndpoint): Promise<void> {
    await this.#removeMapEntries(ep);
    const host = this.#o.netns.socketHere();
    try {
      deleteLink(host, ep.hostIfName);
    } finally {
      host.close();
    }
  }

  // ---- datapath entries ----

  #router(prefix: string): IpcacheInfo | undefined {
    return this.#routerIpcache.get(this.#o.datapath.ipcache.keyId({ prefix }))?.info;
  }

  /**
   * Identity (the router's entry for the pod's address, else the init identity) and policy
   * flags of an endpoint. Before the first snapshot of the router or policy subjects it keeps
   * what the endpoint had: a restarted agent must not rewrite healthy entries on a guess.
   */
  #desiredOf(ep: Endpoint): { identity: number; flags: number } {
    let identity = this.#routerSynced ? this.#o.initIdentity : ep.identity;
    if (this.#routerSynced) {
      for (const p of prefixesOf(ep)) {
        const r = this.#router(p);
        if (r) {
          identity = r.identity;
          break;
        }
      }
    }
    if (!this.#policySynced) return { identity, flags: ep.flags };
    const pol = this.#policies.get(podKey(ep.pod));
    const flags =
      (pol?.enforceIngress ? EndpointFlags.ENFORCE_INGRESS : 0) |
      (pol?.enforceEgress ? EndpointFlags.ENFORCE_EGRESS : 0);
    return { identity, flags };
  }

  #endpointInfo(ep: Endpoint): EndpointInfo {
    return {
      ifindex: ep.hostIfindex,
      endpointId: ep.endpointId,
      identity: ep.identity,
      flags: ep.flags,
      mac: ep.mac,
      nodeMac: ep.hostMac,
    };
  }

  #localIpcache(ep: Endpoint): IpcacheInfo {
    return { identity: ep.identity, nodeId: this.#o.nodeId, flags: IpcacheFlags.LOCAL_NODE };
  }

  #policyEntries(ep: Endpoint): Array<[PolicyKey, PolicyValue]> {
    const pol = this.#policies.get(podKey(ep.pod));
    if (!pol) return [];
    const out: Array<[PolicyKey, PolicyValue]> = [];
    pol.rules.forEach((r, i) => {
      const keys = policyKeys({
        endpointId: ep.endpointId,
        identity: r.identity,
        direction: r.direction,
        ...(r.proto !== undefined ? { proto: r.proto } : {}),
        ...(r.ports !== undefined ? { ports: r.ports } : {}),
      });
      const value = {
        action: r.action === 'deny' ? PolicyAction.DENY : PolicyAction.ALLOW,
        ruleId: i + 1,
      };
      for (const k of keys) out.push([k, value]);
    });
    return out;
  }

  /** Queues what an endpoint needs in the three maps (differences only) and writes them now. */
  async #writeEndpoint(ep: Endpoint): Promise<void> {
    const dp = this.#o.datapath;
    const writes: Array<Promise<void>> = [];
    const info = this.#endpointInfo(ep);
    for (const address of addressesOf(ep)) writes.push(dp.endpoints.set({ address }, info));
    for (const prefix of prefixesOf(ep))
      writes.push(dp.ipcache.set({ prefix }, this.#localIpcache(ep)));
    writes.push(...this.#syncPolicy(ep));
    dp.flush();
    await Promise.all(writes);
  }

  #syncPolicy(ep: Endpoint): Array<Promise<void>> {
    if (!this.#policySynced) return [];
    const dp = this.#o.datapath;
    const wanted = this.#policyEntries(ep);
    const writes = wanted.map(([k, v]) => dp.policy.set(k, v));
    const keep = new Set(wanted.map(([k]) => dp.policy.keyId(k)));
    for (const [k] of dp.policy.entries()) {
      if (k.endpointId === ep.endpointId && !keep.has(dp.policy.keyId(k)))
        writes.push(dp.policy.delete(k));
    }
    return writes;
  }

  async #removeMapEntries(ep: Endpoint): Promise<void> {
    const dp = this.#o.datapath;
    const writes: Array<Promise<void>> = [];
    for (const address of addressesOf(ep))
      if (dp.endpoints.has({ address })) writes.push(dp.endpoints.delete({ address }));
    for (const prefix of prefixesOf(ep)) {
      const router = this.#router(prefix);
      if (router) writes.push(dp.ipcache.set({ prefix }, router));
      else if (dp.ipcache.has({ prefix })) writes.push(dp.ipcache.delete({ prefix }));
    }
    for (const [k] of dp.policy.entries())
      if (k.endpointId === ep.endpointId) writes.push(dp.policy.delete(k));
    dp.flush();
    await Promise.all(writes);
  }

  // ---- desired state (router ipcache, pod policy) ----

  /** Replaces the router's entries for this node (a snapshot); call reconcile() after. */
  setRouterIpcache(entries: ReadonlyArray<{ prefix: string; info: IpcacheInfo }>): void {
    this.#routerIpcache.clear();
    for (const e of entries)
      this.#routerIpcache.set(this.#o.datapath.ipcache.keyId({ prefix: e.prefix }), e);
    this.#routerSynced = true;
  }

  /** Replaces every pod policy (a snapshot); call reconcile() after. */
  setPolicies(policies: ReadonlyMap<string, PodPolicy>): void {
    this.#policies.clear();
    for (const [k, v] of policies) this.#policies.set(k, v);
    this.#policySynced = true;
  }

  /** One router change. Writes are queued and coalesced with the ones around them. */
  applyRouterIpcache(prefix: string, info: IpcacheInfo | undefined): void {
    const dp = this.#o.datapath;
    const id = dp.ipcache.keyId({ prefix });
    if (info) this.#routerIpcache.set(id, { prefix, info });
    else this.#routerIpcache.delete(id);
    const local = this.endpoints().find(
      (ep) =>
        ep.phase === 'ready' && prefixesOf(ep).some((p) => dp.ipcache.keyId({ prefix: p }) === id),
    );
    if (local) {
      this.#refresh(local);
      return;
    }
    const w = info ? dp.ipcache.set({ prefix }, info) : dp.ipcache.delete({ prefix });
    w.catch((err: unknown) => this.#o.logger.error({ err, prefix }, 'ipcache write failed'));
  }

  /** One pod's policy changed (undefined: lifted). */
  applyPolicy(namespace: string, name: string, policy: PodPolicy | undefined): void {
    const key = podKey({ namespace, name });
    if (policy) this.#policies.set(key, policy);
    else this.#policies.delete(key);
    for (const ep of this.endpoints())
      if (ep.phase === 'ready' && podKey(ep.pod) === key) this.#refresh(ep);
  }

  /** Re-derives an endpoint's identity and flags and queues what changed in the maps. */
  #refresh(stored: StoredEndpoint): void {
    const ep = { ...stored, ...this.#desiredOf(stored) };
    const dp = this.#o.datapath;
    const writes: Array<Promise<void>> = [];
    const info = this.#endpointInfo(ep);
    for (const address of addressesOf(ep)) writes.push(dp.endpoints.set({ address }, info));
    for (const prefix of prefixesOf(ep))
      writes.push(dp.ipcache.set({ prefix }, this.#localIpcache(ep)));
    writes.push(...this.#syncPolicy(ep));
    Promise.all(writes).catch((err: unknown) =>
      this.#o.logger.error({ err, containerId: ep.containerId }, 'endpoint map update failed'),
    );
    if (ep.identity !== stored.identity || ep.flags !== stored.flags) {
      this.#endpoints.set(endpointKey(ep), ep);
      this.#persist();
      this.#o.reporter.upsert(ep);
    }
  }

  // ---- CHECK ----

  #check(req: CheckRequest, key: string): void {
    const ep = this.#endpoints.get(key);
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
    const host = this.#o.netns.socketHere();
    try {
      const link = linkByName(host, ep.hostIfName);
      if (!link) problems.push(`host veth ${ep.hostIfName} is missing`);
      else {
        if (link.index !== ep.hostIfindex)
          problems.push(
            `host veth ${ep.hostIfName} has ifindex ${link.index}, expected ${ep.hostIfindex}`,
          );
        if ((link.flags & 1) === 0) problems.push(`host veth ${ep.hostIfName} is down`);
        const a = this.#o.datapath.attached(link.index);
        if (a.ingress === undefined)
          problems.push('dy_from_container is not attached (tc ingress)');
        if (a.egress === undefined) problems.push('dy_to_container is not attached (tc egress)');
      }
    } finally {
      host.close();
    }
    const info = this.#endpointInfo(ep);
    for (const address of addressesOf(ep)) {
      const inKernel = this.#o.datapath.endpoints.map.lookup({ address });
      if (!inKernel) problems.push(`endpoint map has no entry for ${address}`);
      else if (JSON.stringify(inKernel) !== JSON.stringify(info))
        problems.push(`endpoint map entry for ${address} differs: ${JSON.stringify(inKernel)}`);
    }
    problems.push(...this.#checkPod(ep));
    if (problems.length > 0)
      throw new CniError(
        CniCode.checkFailed,
        'endpoint is not as ADD left it',
        problems.join('; '),
      );
  }

  #checkPod(ep: StoredEndpoint): string[] {
    const o = this.#o.netns.open(ep.netns);
    if (!('fd' in o)) return [`network namespace ${ep.netns} is gone`];
    const problems: string[] = [];
    try {
      const pod = this.#o.netns.socketIn(o.fd);
      try {
        const link: Link | undefined = linkByName(pod, ep.ifName);
        if (!link) return [`${ep.ifName} is missing in ${ep.netns}`];
        if (link.mac !== ep.mac)
          problems.push(`${ep.ifName} has MAC ${link.mac ?? '?'}, expected ${ep.mac}`);
        if ((link.flags & 1) === 0) problems.push(`${ep.ifName} is down`);
        const have = new Set(
          listAddresses(pod, link.index).map((a) => `${a.address}/${a.prefixLen}`),
        );
        if (ep.ipv4 && !have.has(`${ep.ipv4.address}/32`))
          problems.push(`${ep.ipv4.address}/32 missing on ${ep.ifName}`);
        if (ep.ipv6 && !have.has(`${ep.ipv6.address}/128`))
          problems.push(`${ep.ipv6.address}/128 missing on ${ep.ifName}`);
        for (const [fam, af] of [
          [ep.ipv4, AF_INET],
          [ep.ipv6, AF_INET6],
        ] as const) {
          if (!fam) continue;
          const def = listRoutes(pod, af).find(
            (r) => r.dstLen === 0 && r.oif === link.index && r.gateway === fam.gateway,
          );
          if (!def) problems.push(`no default route via ${fam.gateway} on ${ep.ifName}`);
        }
        const neigh = listNeighbours(pod, link.index);
        for (const fam of [ep.ipv4, ep.ipv6]) {
          if (!fam) continue;
          const n = neigh.find((x) => x.address === fam.gateway);
          if (!n || n.mac !== ep.hostMac || (n.state & NUD_PERMANENT) === 0)
            problems.push(`gateway ${fam.gateway} is not a permanent neighbour at ${ep.hostMac}`);
        }
      } finally {
        pod.close();
      }
    } finally {
      this.#o.netns.close(o.fd);
    }
    return problems;
  }

  // ---- restore and reconcile ----

  /**
   * Rebuilds the endpoint table from the state file and the kernel after a start: keeps what is
   * healthy without writing it again, repairs what is missing, removes what is stale.
   */
  async restore(): Promise<RestoreReport> {
    const { state, datapath, logger } = this.#o;
    const saved = state.load((reason, movedTo) =>
      logger.error({ reason, movedTo }, 'state file unreadable; starting without endpoints'),
    );
    datapath.load();
    const upgrade = saved.objectHash !== undefined && saved.objectHash !== datapath.objectHash;
    const report = {
      kept: 0,
      replumbed: 0,
      removed: 0,
      rolledBack: 0,
      staleLinks: 0,
      reattached: 0,
    };
    const host = this.#o.netns.socketHere();
    const gone: StoredEndpoint[] = [];
    try {
      const links = new Map(listLinks(host).map((l) => [l.name, l]));
      for (const ep of saved.endpoints) {
        const key = endpointKey(ep);
        if (ep.phase === 'adding') {
          // died mid-ADD: undo; the runtime retries the ADD
          deleteLink(host, ep.hostIfName);
          links.delete(ep.hostIfName);
          this.#endpoints.set(key, { ...ep, phase: 'releasing' });
          report.rolledBack++;
          continue;
        }
        if (ep.phase === 'releasing') {
          this.#endpoints.set(key, ep);
          continue;
        }
        const link = links.get(ep.hostIfName);
        links.delete(ep.hostIfName);
        if (link && link.kind === 'veth') {
          const kept: StoredEndpoint = { ...ep, hostIfindex: link.index };
          const att = datapath.attached(link.index);
          if (upgrade || att.ingress === undefined || att.egress === undefined) {
            datapath.attachEndpoint(link.index);
            report.reattached++;
          }
          this.#endpoints.set(key, kept);
          report.kept++;
          continue;
        }
        const repaired = this.#replumb(ep, host);
        if (repaired) {
          this.#endpoints.set(key, repaired);
          report.replumbed++;
        } else {
          gone.push(ep);
          this.#endpoints.set(key, { ...ep, phase: 'releasing' });
          report.removed++;
        }
      }
      // veths that look like ours but belong to no endpoint
      const ours = new RegExp(`^${this.#o.vethPrefix}[0-9a-f]{${15 - this.#o.vethPrefix.length}}$`);
      for (const l of links.values()) {
        if (l.kind === 'veth' && ours.test(l.name)) {
          deleteLink(host, l.name);
          report.staleLinks++;
        }
      }
    } finally {
      host.close();
    }
    // what the dead ones had in the maps goes now, not at the next router snapshot
    for (const ep of this.endpoints())
      if (ep.phase === 'releasing') await this.#removeMapEntries(ep);
    await this.reconcile();
    this.#persist();
    this.#restored = true;
    for (const ep of gone) this.#o.reporter.remove(ep);
    logger.info({ ...report, writes: datapath.stats() }, 'endpoints restored');
    void this.retryReleases();
    return report;
  }

  /** Re-creates the veth of an endpoint whose pod still exists; undefined when the pod is gone. */
  #replumb(ep: StoredEndpoint, host: NetlinkSocket): StoredEndpoint | undefined {
    const o = this.#o.netns.open(ep.netns);
    if (!('fd' in o)) return undefined;
    try {
      const pod = this.#o.netns.socketIn(o.fd);
      try {
        deleteLink(pod, ep.ifName);
        createVeth(host, {
          name: ep.hostIfName,
          mac: ep.hostMac,
          mtu: ep.mtu,
          peer: { name: ep.ifName, mac: ep.mac, netnsFd: o.fd },
        });
        const hostLink = linkByName(host, ep.hostIfName);
        const podLink = linkByName(pod, ep.ifName);
        if (!hostLink || !podLink) return undefined;
        const fams = {
          ...(ep.ipv4 ? { ipv4: ep.ipv4 } : {}),
          ...(ep.ipv6 ? { ipv6: ep.ipv6 } : {}),
        };
        host.apply(hostSideRequests({ hostIfindex: hostLink.index, podMac: ep.mac, ...fams }));
        pod.apply(podSideRequests({ podIfindex: podLink.index, hostMac: ep.hostMac, ...fams }));
        this.#o.datapath.attachEndpoint(hostLink.index);
        return { ...ep, hostIfindex: hostLink.index };
      } finally {
        pod.close();
      }
    } catch (e) {
      this.#o.logger.warn(
        { err: e, containerId: ep.containerId },
        'could not re-create an endpoint',
      );
      return undefined;
    } finally {
      this.#o.netns.close(o.fd);
    }
  }

  /**
   * Makes the three maps hold exactly what the endpoints and desired state call for: entries
   * that match are not written, missing or different ones are, the rest are deleted.
   */
  async reconcile(): Promise<void> {
    const dp = this.#o.datapath;
    const writes: Array<Promise<void>> = [];
    const ready = this.endpoints().filter((e) => e.phase === 'ready');
    let changed = false;
    const wantAddresses = new Set<string>();
    const wantPrefixes = new Map<string, [string, IpcacheInfo]>();
    for (const [id, { prefix, info }] of this.#routerIpcache) wantPrefixes.set(id, [prefix, info]);
    const wantEndpointIds = new Set<number>();
    for (const stored of ready) {
      const ep = { ...stored, ...this.#desiredOf(stored) };
      if (ep.identity !== stored.identity || ep.flags !== stored.flags) {
        this.#endpoints.set(endpointKey(ep), ep);
        this.#o.reporter.upsert(ep);
        changed = true;
      }
      const info = this.#endpointInfo(ep);
      for (const address of addressesOf(ep)) {
        wantAddresses.add(dp.endpoints.keyId({ address }));
        writes.push(dp.endpoints.set({ address }, info));
      }
      for (const prefix of prefixesOf(ep))
        wantPrefixes.set(dp.ipcache.keyId({ prefix }), [prefix, this.#localIpcache(ep)]);
      wantEndpointIds.add(ep.endpointId);
      writes.push(...this.#syncPolicy(ep));
    }
    for (const [k] of dp.endpoints.entries())
      if (!wantAddresses.has(dp.endpoints.keyId(k))) writes.push(dp.endpoints.delete(k));
    for (const [prefix, info] of wantPrefixes.values())
      writes.push(dp.ipcache.set({ prefix }, info));
    // without the router's word, entries that are not a local endpoint's are left alone
    if (this.#routerSynced)
      for (const [k] of dp.ipcache.entries())
        if (!wantPrefixes.has(dp.ipcache.keyId(k))) writes.push(dp.ipcache.delete(k));
    for (const [k] of dp.policy.entries())
      if (!wantEndpointIds.has(k.endpointId)) writes.push(dp.policy.delete(k));
    dp.flush();
    await Promise.all(writes);
    if (changed && this.#restored) this.#persist();
  }
}

/** The lock of a whole container (its IPAM allocation), apart from its attachments' locks. */
function containerLockKey(containerId: string): string {
  return `container:${containerId}`;
}
