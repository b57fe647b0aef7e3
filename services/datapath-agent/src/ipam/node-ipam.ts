import type { Family } from '@dyad/netaddr';
import type { Bus } from '@dyad/bus';
import { RemoteError } from '@dyad/bus';
import {
  AddressesAllocated,
  AddressesExhausted,
  AddressesReleased,
  GrowReply,
  GrowRequest,
  IPAM_ALLOCATIONS_STREAM,
  IpamErrorCode,
  NodeBlocksHeld,
  ipamAllocFilter,
  ipamAllocSubject,
  ipamExhaustedSubject,
  ipamGrowSubject,
  ipamHeldSubject,
} from '@dyad/contracts';
import type { NodeBlockValue } from '@dyad/contracts';
import type { PodRef } from '../cni/request.ts';
import { CniCode } from '../cni/spec.ts';
import type { Allocated, AgentLogger, PodAddressing, PublishLatest } from '../endpoint-manager.ts';
import { CniError } from '../errors.ts';
import type { Holder, NodeAllocator } from './allocator.ts';
import type { SlotAddress } from './blocks.ts';
import type { EndpointAddress } from '../endpoint.ts';
import { planRecords } from '../records.ts';
import { adoptHolders } from '../restore.ts';
import type { AdoptedHolder } from '../restore.ts';

/** How long a release record stays in DYAD_IPAM_ALLOCATIONS. */
const RELEASE_TTL = '24h';

export interface NodeIpamOptions {
  readonly node: string;
  readonly allocator: NodeAllocator;
  /** Publishes the node's last-value records (allocations, held blocks). */
  readonly publish: PublishLatest;
  /** Undefined until NATS is first connected. */
  readonly bus: () => Bus | undefined;
  /** Ask for another block set when fewer slots than this are free. */
  readonly preAllocate: number;
  /** How long an ADD on a full node waits for ipam to grant another set. */
  readonly growWaitMs: number;
  readonly growTimeoutMs: number;
  /** The blocks changed: the state file must be written. */
  readonly onBlocks: () => void;
  readonly logger: AgentLogger;
  readonly now?: () => number;
}

function toAllocated(addresses: readonly SlotAddress[]): Allocated {
  const out: { ipv4?: EndpointAddress; ipv6?: EndpointAddress } = {};
  for (const { family, ...a } of addresses) out[family === 'IPv4' ? 'ipv4' : 'ipv6'] = a;
  return out;
}

function familyAddresses(addresses: readonly SlotAddress[]) {
  return addresses.map((a) =>
    a.family === 'IPv4'
      ? { family: 'IPv4' as const, address: a.address }
      : { family: 'IPv6' as const, address: a.address },
  );
}

/**
 * The node's IPAM: pod addresses from the node's own blocks (NodeAllocator, in the state file),
 * another block set from ipam when the free slots run low, and the node's records on NATS
 * (allocations and held blocks, in DYAD_IPAM_ALLOCATIONS) for `dyad ipam list`, the router, ipam's
 * rebuild and third parties. No ADD waits on the network unless the node is full.
 */
export class NodeIpam implements PodAddressing {
  readonly #o: NodeIpamOptions;
  readonly #now: () => number;
  /** What released containers held, until their release record is published. */
  readonly #released = new Map<string, { holder: Holder; addresses: SlotAddress[] }>();
  #waiters: Array<() => void> = [];
  #adopt: AdoptedHolder[] = [];
  /** When ipam last answered that the pool is exhausted (no grow before a while has passed). */
  #poolExhaustedAt: number | undefined;

  constructor(opts: NodeIpamOptions) {
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
  }

  blocker(): string | undefined {
    if (this.#o.allocator.blocks().sets.length > 0) return undefined;
    return `node ${this.#o.node} has no pod CIDR from ipam yet`;
  }

  /**
   * Sandboxes that held addresses before this allocator knew them (an upgrade from ipam-held
   * allocations): their slots are taken the moment the blocks they lie in arrive, before any ADD.
   */
  adoptOnBlocks(holders: readonly AdoptedHolder[]): void {
    this.#adopt.push(...holders);
    if (this.#o.allocator.blocks().sets.length === 0) return;
    this.#runAdoption();
    this.#o.onBlocks();
  }

  #runAdoption(): void {
    const adopt = this.#adopt;
    this.#adopt = [];
    if (adopt.length === 0) return;
    const { adopted, conflicts } = adoptHolders(this.#o.allocator, adopt, this.#o.logger);
    this.#o.logger.info({ adopted: adopted.length, conflicts }, 'allocations adopted');
    for (const c of adopted) this.announce(c);
  }

  /** The node's blocks from ipam (its assignment subject or a grow reply). */
  setBlocks(list: readonly NodeBlockValue[]): void {
    try {
      const change = this.#o.allocator.setBlocks(list);
      if (!change.changed) return;
      this.#poolExhaustedAt = undefined;
      this.#o.logger.info({ sets: change.sets, blocks: list }, 'node blocks');
      // before any ADD can allocate from the new blocks: what others held there is taken first
      this.#runAdoption();
      this.#o.onBlocks();
      this.publishHeld();
      // a family added to every set can renumber slots: the records carry the slot
      if (change.renumbered > 0)
        for (const h of this.#o.allocator.holders()) this.announce(h.containerId);
      this.#wakeWaiters();
    } catch (err) {
      // ipam must only ever add sets; anything else is refused and reported, nothing changes
      this.#o.logger.error({ err, blocks: list }, 'node blocks refused');
    }
  }

  async allocate(req: {
    readonly containerId: string;
    readonly pod: PodRef;
    readonly families?: readonly Family[];
  }): Promise<Allocated> {
    const a = this.#o.allocator;
    let r = a.allocate(req);
    if (!r.ok && r.reason === 'exhausted') {
      await this.#growSettled();
      r = a.allocate(req);
    }
    if (r.ok) {
      this.#maybeGrow();
      return toAllocated(r.addresses);
    }
    switch (r.reason) {
      case 'no-blocks':
        throw new CniError(CniCode.tryAgainLater, 'no pod CIDR on this node yet', r.message);
      case 'family-disabled':
        throw new CniError(
          CniCode.invalidConfig,
          'invalid network configuration: family not enabled in IPAM',
          r.message,
        );
      case 'owner-mismatch':
        throw new CniError(
          CniCode.invalidEnvironment,
          'CNI_CONTAINERID is in use by another pod',
          r.message,
        );
      case 'exhausted': {
        const pool = this.#poolExhaustedAt !== undefined;
        const message = `${r.message}${pool ? '; the cluster pool has no block left' : '; ipam did not grant another block in time'}`;
        this.#publishExhausted(message);
        if (pool) throw new CniError(CniCode.addressesExhausted, 'no free address', message);
        throw new CniError(CniCode.tryAgainLater, 'no free address yet', message);
      }
    }
  }

  release(containerId: string): boolean {
    const h = this.#o.allocator.holder(containerId);
    if (!h) return false;
    const addresses = this.#o.allocator.addressesOf(h);
    this.#o.allocator.release(containerId);
    this.#released.set(containerId, { holder: h, addresses });
    this.#maybeGrow();
    return true;
  }

  holders(): string[] {
    return this.#o.allocator.holders().map((h) => h.containerId);
  }

  announce(containerId: string): void {
    const h = this.#o.allocator.holder(containerId);
    const subject = ipamAllocSubject(this.#o.node, containerId);
    if (h) {
      this.#released.delete(containerId);
      this.#o.publish(AddressesAllocated, subject, this.#allocatedRecord(h));
      return;
    }
    const r = this.#released.get(containerId);
    if (!r) return;
    this.#released.delete(containerId);
    this.#o.publish(
      AddressesReleased,
      subject,
      { ...this.#owner(r.holder), addresses: familyAddresses(r.addresses), reason: 'request' },
      { ttl: RELEASE_TTL },
    );
  }

  /** Core NATS, fire and forget: while NATS is away the CNI error is the report. */
  #publishExhausted(message: string): void {
    const bus = this.#o.bus();
    if (bus === undefined || !bus.isConnected()) return;
    for (const family of this.#o.allocator.blocks().families)
      bus.publish(AddressesExhausted, ipamExhaustedSubject(this.#o.node), {
        node: this.#o.node,
        family,
        scope: 'node-block',
        message,
      });
  }

  publishHeld(): void {
    this.#o.publish(NodeBlocksHeld, ipamHeldSubject(this.#o.node), {
      node: this.#o.node,
      blocks: this.#o.allocator.toJSON().blocks,
      at: new Date(this.#now()).toISOString(),
    });
  }

  /**
   * Makes the node's records on NATS match the allocator (after a start, a reconnect, NATS
   * losing its data): missing or different allocations are published, allocations the node no
   * longer holds get a release record, and the held blocks are published.
   */
  async reconcile(bus: Bus): Promise<{ published: number; released: number }> {
    const stored = await bus.snapshot([AddressesAllocated, AddressesReleased], {
      stream: IPAM_ALLOCATIONS_STREAM,
      filterSubjects: [ipamAllocFilter(this.#o.node)],
    });
    const want = new Map(
      this.#o.allocator
        .holders()
        .map((h) => [ipamAllocSubject(this.#o.node, h.containerId), this.#allocatedRecord(h)]),
    );
    const plan = planRecords(stored, want, (v) => 'allocatedAt' in v);
    for (const subject of plan.publish) {
      const record = want.get(subject);
      if (record) this.#o.publish(AddressesAllocated, subject, record);
    }
    for (const [subject, v] of plan.tombstone)
      this.#o.publish(
        AddressesReleased,
        subject,
        {
          node: v.node,
          namespace: v.namespace,
          pod: v.pod,
          podUid: v.podUid,
          containerId: v.containerId,
          addresses: v.addresses,
          reason: 'request',
        },
        { ttl: RELEASE_TTL },
      );
    const published = plan.publish.length;
    const released = plan.tombstone.length;
    this.publishHeld();
    this.#maybeGrow();
    return { published, released };
  }

  #owner(h: Holder) {
    return {
      node: this.#o.node,
      namespace: h.pod.namespace,
      pod: h.pod.name,
      podUid: h.pod.uid ?? `cni-${h.containerId}`.slice(0, 128),
      containerId: h.containerId,
    };
  }

  #allocatedRecord(h: Holder) {
    return {
      ...this.#owner(h),
      addresses: familyAddresses(this.#o.allocator.addressesOf(h)),
      allocatedAt: h.allocatedAt,
      slot: h.slot,
    };
  }

  /**
   * Asks for another set if none is asked for, then waits (bounded) until ipam has answered:
   * with more blocks, or with a refusal.
   */
  async #growSettled(): Promise<void> {
    this.#maybeGrow(true);
    if (!this.#o.allocator.growPending()) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== done);
        resolve();
      }, this.#o.growWaitMs);
      const done = () => {
        clearTimeout(t);
        resolve();
      };
      this.#waiters.push(done);
    });
  }

  #wakeWaiters(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** Asks ipam for another block set when the free slots run low (once at a time). */
  #maybeGrow(full = false): void {
    const a = this.#o.allocator;
    const bus = this.#o.bus();
    if (bus === undefined || !bus.isConnected()) return;
    if (!a.needsGrow(full ? Number.POSITIVE_INFINITY : this.#o.preAllocate)) return;
    // an exhausted pool is asked again at most every 30 s (a node deleted elsewhere frees blocks)
    if (this.#poolExhaustedAt !== undefined && this.#now() - this.#poolExhaustedAt < 30_000) return;
    const sets = a.growRequested();
    const node = this.#o.node;
    bus
      .request(GrowRequest, ipamGrowSubject(node), { node, sets }, GrowReply, {
        timeoutMs: this.#o.growTimeoutMs,
      })
      .then(
        (reply) => {
          const before = a.blocks().sets.length;
          this.setBlocks(reply.blocks);
          // no new set in the reply: it came through the assignment stream already, or none will
          if (a.blocks().sets.length <= before) a.growAbandoned();
          this.#wakeWaiters();
        },
        (err: unknown) => {
          a.growAbandoned();
          if (err instanceof RemoteError && err.code === IpamErrorCode.exhausted) {
            this.#poolExhaustedAt = this.#now();
            this.#o.logger.warn({ err, sets }, 'ipam has no block left for this node');
          } else this.#o.logger.warn({ err, sets }, 'grow request failed; asking again later');
          this.#wakeWaiters();
        },
      );
  }

  toJSON(): unknown {
    return this.#o.allocator.toJSON();
  }
}
