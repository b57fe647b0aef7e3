import type { Bus, BusConsumer, JsDelivery } from '@dyad/bus';
import {
  IPAM_NODES_STREAM,
  IpamNodeEvent,
  NODE_DESIRED_STREAM,
  PodPolicyDesired,
  ROUTER_STREAM,
  RouterIpcacheEvent,
  ipamNodeSubject,
  nodeDesiredFilter,
  routerNodeFilter,
} from '@dyad/contracts';
import type { PayloadOf } from '@dyad/contracts';
import { IpcacheFlags } from '@dyad/libbpf-ts';
import type { IpcacheInfo } from '@dyad/libbpf-ts';
import type { Agent, AgentLogger, PodPolicy } from './agent.ts';

type RouterIpcache = PayloadOf<typeof RouterIpcacheEvent>;
type Policy = PayloadOf<typeof PodPolicyDesired>;
type Block = { family: 'IPv4' | 'IPv6'; cidr: string; gateway: string };

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

/**
 * The node's desired state from NATS, and only from NATS: the router's ipcache entries for this
 * node, the pod policies for this node, and the node's IPAM blocks (for status). Each is read as
 * a snapshot first (the agent reconciles its maps against it once), then followed from just
 * after the snapshot; changes reach the maps through the agent's coalesced writes.
 */
export class DesiredState {
  readonly #agent: Agent;
  readonly #node: string;
  readonly #logger: AgentLogger;
  readonly #consumers: BusConsumer[] = [];
  #blocks: Block[] = [];

  constructor(agent: Agent, node: string, logger: AgentLogger) {
    this.#agent = agent;
    this.#node = node;
    this.#logger = logger;
  }

  blocks(): readonly Block[] {
    return this.#blocks;
  }

  async start(bus: Bus): Promise<void> {
    const router = await snapshotOrEmpty(() =>
      bus.snapshot([RouterIpcacheEvent], {
        stream: ROUTER_STREAM,
        filterSubjects: [`${routerNodeFilter(this.#node).slice(0, -1)}ipcache.>`],
      }),
    );
    const policies = await snapshotOrEmpty(() =>
      bus.snapshot([PodPolicyDesired], {
        stream: NODE_DESIRED_STREAM,
        filterSubjects: [nodeDesiredFilter(this.#node)],
      }),
    );
    const blocks = await snapshotOrEmpty(() =>
      bus.snapshot([IpamNodeEvent], {
        stream: IPAM_NODES_STREAM,
        filterSubjects: [ipamNodeSubject(this.#node)],
      }),
    );
    for (const d of blocks.values()) this.#takeBlocks(d.value);

    const entries: Array<{ prefix: string; info: IpcacheInfo }> = [];
    for (const d of router.values())
      if (d.value.op === 'upsert')
        entries.push({ prefix: d.value.entry.prefix, info: routerEntryInfo(d.value.entry) });
    this.#agent.setRouterIpcache(entries);
    const pol = new Map<string, PodPolicy>();
    for (const d of policies.values())
      if (d.value.op === 'upsert')
        pol.set(`${d.value.namespace}/${d.value.name}`, policyOf(d.value));
    this.#agent.setPolicies(pol);
    await this.#agent.reconcile();
    this.#logger.info(
      { routerEntries: entries.length, policies: pol.size, blocks: this.#blocks },
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
          filterSubjects: [`${routerNodeFilter(this.#node).slice(0, -1)}ipcache.>`],
          // big pulls: a flood of router updates arrives in few chunks, so few batch writes
          maxMessages: 1024,
          ...from(router),
        },
        (d) => {
          const v = d.value;
          if (v.op === 'upsert')
            this.#agent.applyRouterIpcache(v.entry.prefix, routerEntryInfo(v.entry));
          else this.#agent.applyRouterIpcache(v.prefix, undefined);
        },
      ),
      await bus.consume(
        [PodPolicyDesired],
        {
          stream: NODE_DESIRED_STREAM,
          filterSubjects: [nodeDesiredFilter(this.#node)],
          ...from(policies),
        },
        (d) => {
          const v = d.value;
          this.#agent.applyPolicy(v.namespace, v.name, v.op === 'upsert' ? policyOf(v) : undefined);
        },
      ),
      await bus.consume(
        [IpamNodeEvent],
        {
          stream: IPAM_NODES_STREAM,
          filterSubjects: [ipamNodeSubject(this.#node)],
          ...from(blocks),
        },
        (d) => this.#takeBlocks(d.value),
      ),
    );
  }

  #takeBlocks(v: PayloadOf<typeof IpamNodeEvent>): void {
    this.#blocks = v.op === 'upsert' ? v.blocks.map((b) => ({ ...b })) : [];
  }

  async stop(): Promise<void> {
    await Promise.all(this.#consumers.map((c) => c.stop()));
    this.#consumers.length = 0;
  }
}
