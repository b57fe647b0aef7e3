import type { Bus, BusConsumer, JsDelivery } from '@dyad/bus';
import {
  IPAM_NODES_STREAM,
  IpamNodeEvent,
  NODE_DESIRED_STREAM,
  PodPolicyDesired,
  ROUTER_STREAM,
  RouterIpcacheEvent,
  RouterRouteEvent,
  ipamNodeSubject,
  nodeDesiredFilter,
  routerIpcacheFilter,
  routerRouteFilter,
} from '@dyad/contracts';
import type { NodeBlockValue, PayloadOf } from '@dyad/contracts';
import { IpcacheFlags } from '@dyad/libbpf-ts';
import type { IpcacheInfo } from '@dyad/libbpf-ts';
import type { DatapathReconciler } from './datapath/reconciler.ts';
import { canonicalPrefix } from './datapath/desired-maps.ts';
import type { PodPolicy, PolicyState, RouterState } from './datapath/desired-maps.ts';
import type { AgentLogger } from './endpoint-manager.ts';
import type { NodeRoutes } from './node-routes.ts';

type RouterIpcache = PayloadOf<typeof RouterIpcacheEvent>;
type Policy = PayloadOf<typeof PodPolicyDesired>;

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
  return { enforceIngress: p.enforceIngress, enforceEgress: p.enforceEgress, rules: p.rules };
}

function lastSeq(m: ReadonlyMap<string, JsDelivery<unknown>>): number {
  let s = 0;
  for (const d of m.values()) s = Math.max(s, d.streamSeq);
  return s;
}

/** A missing stream reads as empty: its writer has not started yet. */
async function snapshotOrEmpty<T>(read: () => Promise<Map<string, JsDelivery<T>>>) {
  try {
    return await read();
  } catch (e) {
    if (e instanceof Error && /stream not found/i.test(e.message))
      return new Map<string, JsDelivery<T>>();
    throw e;
  }
}

export interface FollowerOptions {
  readonly node: string;
  readonly reconciler: DatapathReconciler;
  /** The node's own routes to other nodes' pod blocks. */
  readonly routes: NodeRoutes;
  /** The node's blocks as ipam assigned them (set by set, family order). */
  readonly onBlocks: (blocks: readonly NodeBlockValue[]) => void;
  readonly logger: AgentLogger;
}

/**
 * The node's desired state from NATS, and only from NATS: the router's ipcache entries for this
 * node, the pod policies for this node, and the node's IPAM blocks. Each is read as a snapshot
 * first (then the reconciler compares every map once), then followed from just after the
 * snapshot; each change only marks what it touches.
 */
export class DesiredStateFollower {
  readonly #o: FollowerOptions;
  readonly #consumers: BusConsumer[] = [];
  #router: { synced: boolean; entries: Map<string, IpcacheInfo> } = {
    synced: false,
    entries: new Map(),
  };
  #policy: { synced: boolean; policies: Map<string, PodPolicy> } = {
    synced: false,
    policies: new Map(),
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

  async start(bus: Bus): Promise<void> {
    const node = this.#o.node;
    const routerFilter = routerIpcacheFilter(node);
    const routesFilter = routerRouteFilter(node);
    const router = await snapshotOrEmpty(() =>
      bus.snapshot([RouterIpcacheEvent], { stream: ROUTER_STREAM, filterSubjects: [routerFilter] }),
    );
    const routes = await snapshotOrEmpty(() =>
      bus.snapshot([RouterRouteEvent], { stream: ROUTER_STREAM, filterSubjects: [routesFilter] }),
    );
    const policies = await snapshotOrEmpty(() =>
      bus.snapshot([PodPolicyDesired], {
        stream: NODE_DESIRED_STREAM,
        filterSubjects: [nodeDesiredFilter(node)],
      }),
    );
    const blocks = await snapshotOrEmpty(() =>
      bus.snapshot([IpamNodeEvent], {
        stream: IPAM_NODES_STREAM,
        filterSubjects: [ipamNodeSubject(node)],
      }),
    );
    for (const d of blocks.values()) this.#takeBlocks(d.value);

    const entries = new Map<string, IpcacheInfo>();
    for (const d of router.values())
      if (d.value.op === 'upsert')
        entries.set(canonicalPrefix(d.value.entry.prefix), routerEntryInfo(d.value.entry));
    this.#router = { synced: true, entries };
    const pol = new Map<string, PodPolicy>();
    for (const d of policies.values())
      if (d.value.op === 'upsert')
        pol.set(`${d.value.namespace}/${d.value.name}`, policyOf(d.value));
    this.#policy = { synced: true, policies: pol };
    this.#o.reconciler.markAll();
    await this.#o.reconciler.flush();
    const nodeRoutes = [...routes.values()].flatMap((d) =>
      d.value.op === 'upsert' ? [{ cidr: d.value.route.cidr, via: d.value.route.via }] : [],
    );
    this.#routes(() => this.#o.routes.replace(nodeRoutes));
    this.#o.logger.info(
      { routerEntries: entries.size, routes: nodeRoutes.length, policies: pol.size },
      'desired state applied',
    );

    const from = (m: ReadonlyMap<string, JsDelivery<unknown>>) => {
      const s = lastSeq(m);
      return s > 0 ? { startSeq: s + 1 } : { deliverPolicy: 'all' as const };
    };
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
          this.#o.reconciler.markPrefix(prefix);
        },
      ),
      await bus.consume(
        [RouterRouteEvent],
        { stream: ROUTER_STREAM, filterSubjects: [routesFilter], ...from(routes) },
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
        [PodPolicyDesired],
        {
          stream: NODE_DESIRED_STREAM,
          filterSubjects: [nodeDesiredFilter(node)],
          ...from(policies),
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
          ...from(blocks),
        },
        (d) => this.#takeBlocks(d.value),
      ),
    );
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
