import type { Bus, BusConsumer, SnapshotEach, SnapshotRead } from '@dyad/bus';
import {
  IPAM_NODES_STREAM,
  IpamNodeEvent,
  NODE_DESIRED_STREAM,
  PodPolicyDesiredV2,
  ROUTER_STREAM,
  RouterIpcacheEvent,
  decodeToken,
  RouterRouteEvent,
  RouterServiceEvent,
  RouterSyncEvent,
  ipamNodeSubject,
  nodePolicyFilter,
  routerIpcacheFilter,
  routerRouteFilter,
  routerServiceFilter,
  routerSyncSubject,
} from '@dyad/contracts';
import type {
  MessageContract,
  NodeBlockValue,
  PayloadOf,
  RouterServiceEntryValue,
} from '@dyad/contracts';
import { IpcacheFlags } from '@dyad/libbpf-ts';
import type { IpcacheInfo } from '@dyad/libbpf-ts';
import type { ServiceState } from './datapath/desired-lb.ts';
import { RouterEntries } from './datapath/router-entries.ts';
import type { DatapathReconciler } from './datapath/reconciler.ts';
import { canonicalPrefix } from './datapath/desired-maps.ts';
import type { PodPolicy, PolicyState, RouterState } from './datapath/desired-maps.ts';
import type { AgentLogger } from './endpoint-manager.ts';
import type { NodeRoutes } from './node-routes.ts';

type RouterIpcache = PayloadOf<typeof RouterIpcacheEvent>;
type Policy = PayloadOf<typeof PodPolicyDesiredV2>;

/** A router ipcache entry as the datapath stores it. */
export function routerEntryInfo(e: Extract<RouterIpcache, { op: 'upsert' }>['entry']): IpcacheInfo {
  return {
    identity: e.identity,
    nodeId: 0,
    ...(e.hostAddress ? { nodeAddress: e.hostAddress } : {}),
    flags: e.local ? IpcacheFlags.LOCAL_NODE : 0,
  };
}

function policyOf(p: Extract<Policy, { op: 'upsert' }>): PodPolicy {
  return { ingress: p.ingress, egress: p.egress };
}

/** A missing stream reads as empty: its writer has not started yet. */
async function readOrEmpty(read: () => Promise<SnapshotRead>): Promise<SnapshotRead> {
  try {
    return await read();
  } catch (e) {
    if (e instanceof Error && /stream not found/i.test(e.message))
      return { messages: 0, lastSeq: 0 };
    throw e;
  }
}

/** The last value per subject of a node-sized part of the state: payloads, not deliveries. */
async function lastValues<C extends MessageContract>(
  bus: Bus,
  contract: C,
  stream: string,
  filter: string,
): Promise<{ values: Map<string, PayloadOf<C>>; read: SnapshotRead }> {
  const values = new Map<string, PayloadOf<C>>();
  const each: SnapshotEach<PayloadOf<C>> = (subject, d) => {
    if (d === undefined) values.delete(subject);
    else values.set(subject, d.value);
  };
  const read = await readOrEmpty(() =>
    bus.snapshotEach([contract], { stream, filterSubjects: [filter] }, each),
  );
  return { values, read };
}

/** The prefix an ipcache subject names (its last token), canonical; undefined if it names none. */
function subjectPrefix(subject: string): string | undefined {
  try {
    return canonicalPrefix(decodeToken(subject.slice(subject.lastIndexOf('.') + 1)));
  } catch {
    return undefined;
  }
}

export interface FollowerOptions {
  readonly node: string;
  readonly reconciler: DatapathReconciler;
  /** The node's own routes to other nodes' pod blocks. */
  readonly routes: NodeRoutes;
  /** The node's blocks as ipam assigned them (set by set, family order). */
  readonly onBlocks: (blocks: readonly NodeBlockValue[]) => void;
  /** The pods the ipcache names, whole from each snapshot, then per change (flow enrichment). */
  readonly pods?: {
    /** A fresh address → pod table, filled as the snapshot is read, current from commit(). */
    replacement(): { set(prefix: string, pod: PodRef | undefined): void; commit(): void };
    setPod(prefix: string, pod: PodRef | undefined): void;
  };
  /**
   * The router's state for this node is whole again after the bus had lost it (its sync record
   * is back): follow again, so the snapshot replaces what was kept meanwhile.
   */
  readonly onRouterRestored?: () => void;
  readonly logger: AgentLogger;
}

type PodRef = { readonly namespace: string; readonly name: string };

/**
 * The node's desired state from NATS, and only from NATS: the router's ipcache entries for this
 * node, the pod policies for this node, and the node's IPAM blocks. Each is read as a snapshot
 * first (then the reconciler compares every map once), then followed from just after the
 * snapshot; each change only marks what it touches.
 */
export class DesiredStateFollower {
  readonly #o: FollowerOptions;
  readonly #consumers: BusConsumer[] = [];
  #router: { synced: boolean; entries: RouterEntries } = {
    synced: false,
    entries: new RouterEntries(),
  };
  #policy: { synced: boolean; policies: Map<string, PodPolicy> } = {
    synced: false,
    policies: new Map(),
  };
  #services: { synced: boolean; entries: Map<string, RouterServiceEntryValue> } = {
    synced: false,
    entries: new Map(),
  };

  constructor(opts: FollowerOptions) {
    this.#o = opts;
  }

  router(): RouterState {
    return this.#router;
  }

  policy(): PolicyState {
    return this.#policy;
  }

  services(): ServiceState {
    return this.#services;
  }

  async start(bus: Bus): Promise<void> {
    const node = this.#o.node;
    // The router publishes a node's sync record after all of its entries. None, while this
    // agent followed the router before: the bus lost the router's stream (NATS lost its data)
    // and the router has not republished yet. An empty snapshot is then not "no entries": the
    // node keeps forwarding with what it has, applies what arrives, and follows again once the
    // sync record is back.
    const sync = await lastValues(bus, RouterSyncEvent, ROUTER_STREAM, routerSyncSubject(node));
    const routerLost = sync.values.size === 0 && this.#router.synced;
    const routerFilter = routerIpcacheFilter(node);
    const routesFilter = routerRouteFilter(node);
    const serviceFilter = routerServiceFilter(node);
    // the node's blocks first: pods get addresses while the cluster-sized rest is read
    const blocks = await lastValues(bus, IpamNodeEvent, IPAM_NODES_STREAM, ipamNodeSubject(node));
    for (const v of blocks.values.values()) this.#takeBlocks(v);
    // The router's entries are cluster-sized: each is applied to compact state as it is read,
    // never held as a delivery, so a start on a big cluster needs no more memory than running in it.
    // (after a loss, what the stream has again so far goes on top of what the node kept)
    const entries = routerLost ? this.#router.entries : new RouterEntries();
    const replacement = routerLost ? undefined : this.#o.pods?.replacement();
    const take = (prefix: string, v: RouterIpcache | undefined) => {
      if (v?.op === 'upsert') entries.set(prefix, routerEntryInfo(v.entry));
      else entries.delete(prefix);
      const pod = v?.op === 'upsert' ? v.entry.pod : undefined;
      if (replacement !== undefined) replacement.set(prefix, pod);
      else this.#o.pods?.setPod(prefix, pod);
    };
    const router = await readOrEmpty(() =>
      bus.snapshotEach(
        [RouterIpcacheEvent],
        { stream: ROUTER_STREAM, filterSubjects: [routerFilter] },
        (subject, d) => {
          const v = d?.value;
          // a refused value: the subject's earlier value, if read, is no longer current
          const prefix =
            v === undefined
              ? subjectPrefix(subject)
              : canonicalPrefix(v.op === 'upsert' ? v.entry.prefix : v.prefix);
          if (prefix !== undefined) take(prefix, v);
        },
      ),
    );
    const routes = await lastValues(bus, RouterRouteEvent, ROUTER_STREAM, routesFilter);
    const services = await lastValues(bus, RouterServiceEvent, ROUTER_STREAM, serviceFilter);
    const policies = await lastValues(
      bus,
      PodPolicyDesiredV2,
      NODE_DESIRED_STREAM,
      nodePolicyFilter(node),
    );

    if (!routerLost) {
      this.#router = { synced: true, entries };
      replacement?.commit();
      const svc = new Map<string, RouterServiceEntryValue>();
      for (const v of services.values.values())
        if (v.op === 'upsert') svc.set(`${v.service.namespace}/${v.service.name}`, v.service);
      this.#services = { synced: true, entries: svc };
    }
    // The policy service keeps no completeness record: a stream without a single record (not
    // even a tombstone) while this node enforced policies is a lost stream, not "no policies".
    const policyLost = policies.values.size === 0 && this.#policy.policies.size > 0;
    if (!policyLost) {
      const pol = new Map<string, PodPolicy>();
      for (const v of policies.values.values())
        if (v.op === 'upsert') pol.set(`${v.namespace}/${v.name}`, policyOf(v));
      this.#policy = { synced: true, policies: pol };
    }
    this.#o.reconciler.markAll();
    await this.#o.reconciler.flush();
    const nodeRoutes = [...routes.values.values()].flatMap((v) =>
      v.op === 'upsert' ? [{ cidr: v.route.cidr, via: v.route.via }] : [],
    );
    if (!routerLost) this.#routes(() => this.#o.routes.replace(nodeRoutes));
    const counts = {
      routerEntries: this.#router.entries.size,
      routes: nodeRoutes.length,
      policies: this.#policy.policies.size,
      services: this.#services.entries.size,
    };
    if (routerLost || policyLost)
      this.#o.logger.warn(
        { ...counts, routerLost, policyLost },
        'the bus lost desired state: keeping the last, following what is republished',
      );
    else this.#o.logger.info(counts, 'desired state applied');

    // followed from just after what the snapshot read
    const from = (r: SnapshotRead) =>
      r.lastSeq > 0 ? { startSeq: r.lastSeq + 1 } : { deliverPolicy: 'all' as const };
    this.#consumers.push(
      await bus.consume(
        [RouterIpcacheEvent],
        {
          stream: ROUTER_STREAM,
          filterSubjects: [routerFilter],
          // big pulls: a flood of router updates arrives in few chunks, so few batch writes
          maxMessages: 1024,
          ...from(router),
        },
        (d) => {
          const v = d.value;
          const prefix = canonicalPrefix(v.op === 'upsert' ? v.entry.prefix : v.prefix);
          if (v.op === 'upsert') this.#router.entries.set(prefix, routerEntryInfo(v.entry));
          else this.#router.entries.delete(prefix);
          this.#o.pods?.setPod(prefix, v.op === 'upsert' ? v.entry.pod : undefined);
          this.#o.reconciler.markPrefix(prefix);
        },
      ),
      await bus.consume(
        [RouterRouteEvent],
        { stream: ROUTER_STREAM, filterSubjects: [routesFilter], ...from(routes.read) },
        (d) => {
          const v = d.value;
          this.#routes(() =>
            v.op === 'upsert'
              ? this.#o.routes.set({ cidr: v.route.cidr, via: v.route.via })
              : this.#o.routes.delete(v.cidr),
          );
        },
      ),
      await bus.consume(
        [RouterServiceEvent],
        { stream: ROUTER_STREAM, filterSubjects: [serviceFilter], ...from(services.read) },
        (d) => {
          const v = d.value;
          if (v.op === 'upsert')
            this.#services.entries.set(`${v.service.namespace}/${v.service.name}`, v.service);
          else this.#services.entries.delete(`${v.namespace}/${v.name}`);
          this.#o.reconciler.markServices();
        },
      ),
      await bus.consume(
        [PodPolicyDesiredV2],
        {
          stream: NODE_DESIRED_STREAM,
          filterSubjects: [nodePolicyFilter(node)],
          ...from(policies.read),
        },
        (d) => {
          const v = d.value;
          const key = `${v.namespace}/${v.name}`;
          if (v.op === 'upsert') this.#policy.policies.set(key, policyOf(v));
          else this.#policy.policies.delete(key);
          this.#o.reconciler.markPod(v.namespace, v.name);
        },
      ),
      await bus.consume(
        [IpamNodeEvent],
        {
          stream: IPAM_NODES_STREAM,
          filterSubjects: [ipamNodeSubject(node)],
          ...from(blocks.read),
        },
        (d) => this.#takeBlocks(d.value),
      ),
    );
    if (routerLost) {
      let restored = false;
      this.#consumers.push(
        await bus.consume(
          [RouterSyncEvent],
          { stream: ROUTER_STREAM, filterSubjects: [routerSyncSubject(node)] },
          () => {
            if (restored) return;
            restored = true;
            this.#o.onRouterRestored?.();
          },
        ),
      );
    }
  }

  /** A route the kernel refuses (its gateway unreachable) is logged; the next change retries. */
  #routes(apply: () => void): void {
    try {
      apply();
    } catch (err) {
      this.#o.logger.error({ err }, 'node routes not applied');
    }
  }

  #takeBlocks(v: PayloadOf<typeof IpamNodeEvent>): void {
    // a deleted node's blocks went back to the pool; its pods keep theirs until they go
    if (v.op === 'upsert') this.#o.onBlocks(v.blocks);
    else this.#o.logger.warn({ node: v.node }, "ipam returned this node's blocks to the pool");
  }

  async stop(): Promise<void> {
    await Promise.all(this.#consumers.map((c) => c.stop()));
    this.#consumers.length = 0;
  }
}
