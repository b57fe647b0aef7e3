import { kvValues } from '@dyad/bus';
import type { KV } from '@dyad/bus';
import { IpamKey, IpamSlotRecord } from '@dyad/contracts';
import type { Logger } from '@dyad/telemetry';

/**
 * Addresses IPAM holds for this node's containers that the agent has no endpoint for. The agent is
 * the one authority on which sandboxes exist on its node: an allocation can land in IPAM after the
 * agent gave up on it (a replica that stalled past the agent's timeout writes it after the
 * runtime's DEL found nothing to release), and then no other rule frees it while the pod lives
 * (IPAM's own GC keys on the pod, which got a new sandbox). Such an allocation is released once
 * this agent has seen it unknown for the grace period, by its own clock.
 */

/** One container IPAM holds a slot for on this node. */
export interface HeldContainer {
  readonly containerId: string;
  readonly namespace: string;
  readonly pod: string;
}

export interface SweepPlan {
  /** Unknown for the grace period: to release. */
  readonly release: readonly HeldContainer[];
  /** When each held container unknown now was first seen so; carried to the next pass. */
  readonly unknownSince: ReadonlyMap<string, number>;
}

/** Pure: which held containers to release now, and what to remember for the next pass. */
export function planSweep(
  held: readonly HeldContainer[],
  known: (containerId: string) => boolean,
  unknownSince: ReadonlyMap<string, number>,
  now: number,
  graceMs: number,
): SweepPlan {
  const release: HeldContainer[] = [];
  const next = new Map<string, number>();
  for (const h of held) {
    if (known(h.containerId)) continue;
    const since = unknownSince.get(h.containerId) ?? now;
    next.set(h.containerId, since);
    if (now - since >= graceMs) release.push(h);
  }
  return { release, unknownSince: next };
}

/** Reads the slots IPAM holds for `node` (the DYAD_IPAM bucket), by container. */
export async function heldContainers(kv: KV, node: string): Promise<HeldContainer[]> {
  const out = new Map<string, HeldContainer>();
  for (const e of await kvValues(kv, `${IpamKey.slotPrefix}${node}.*`)) {
    const r = IpamSlotRecord.safeParse(e.value);
    if (!r.success) continue;
    const { containerId, namespace, pod } = r.data;
    out.set(containerId, { containerId, namespace, pod });
  }
  return [...out.values()];
}

export interface SweeperOptions {
  readonly node: string;
  /** The IPAM bucket; rejects while NATS or the bucket is not there (the pass is skipped). */
  readonly kv: () => Promise<KV>;
  /** Whether the agent has an endpoint (in any phase) for the container. */
  readonly known: (containerId: string) => boolean;
  /** Releases one container's addresses if it is still unknown then; true when IPAM freed some. */
  readonly release: (c: HeldContainer) => Promise<boolean>;
  /** Whether the agent's endpoint table is authoritative yet (restored). */
  readonly ready: () => boolean;
  readonly intervalMs: number;
  readonly graceMs: number;
  readonly logger: Logger;
  readonly onReleased?: (c: HeldContainer) => void;
  readonly now?: () => number;
}

export class IpamSweeper {
  readonly #o: SweeperOptions;
  #unknownSince: ReadonlyMap<string, number> = new Map();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(o: SweeperOptions) {
    this.#o = o;
  }

  start(): void {
    if (this.#o.intervalMs <= 0) return;
    this.#schedule();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    await this.#running;
  }

  /** One pass: reads what IPAM holds for the node and releases what has been unknown long enough. */
  async pass(): Promise<void> {
    if (!this.#o.ready()) return;
    const held = await heldContainers(await this.#o.kv(), this.#o.node);
    const now = (this.#o.now ?? Date.now)();
    const plan = planSweep(held, this.#o.known, this.#unknownSince, now, this.#o.graceMs);
    this.#unknownSince = plan.unknownSince;
    for (const c of plan.release) {
      if (!(await this.#o.release(c))) continue;
      this.#o.onReleased?.(c);
      this.#o.logger.warn(
        { containerId: c.containerId, pod: `${c.namespace}/${c.pod}` },
        'released addresses IPAM held for a container this node has no endpoint for',
      );
    }
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#running = this.pass()
        .catch((err: unknown) => this.#o.logger.warn({ err }, 'IPAM sweep pass failed'))
        .finally(() => {
          this.#running = undefined;
          this.#schedule();
        });
    }, this.#o.intervalMs);
    this.#timer.unref();
  }
}
