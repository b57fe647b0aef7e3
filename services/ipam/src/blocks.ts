import type { Family } from '@dyad/netaddr';
import { randomBytes } from 'node:crypto';
import { IpamKey } from '@dyad/contracts';
import { tryCidrValue } from './addr.ts';
import type { BlockLayout } from './carve.ts';
import { blockAddresses, blockAt, blockIndexOf, nextFree, totalBlocks } from './carve.ts';
import type { IpamStore } from './store.ts';
import { parseBlockKey } from './store.ts';

export interface ClaimedBlock {
  readonly family: Family;
  readonly cidr: string;
  readonly gateway: string;
  readonly key: string;
  readonly revision: number;
  readonly at: number;
}

/**
 * Finds and claims free blocks of one family. What this replica believes is claimed is only a
 * search hint; `create` on the claim key decides, and a lost claim just moves the search on.
 * Pinned blocks are different: node agents report holding them (NodeBlocksHeld), so they are
 * never claimed, whatever the bucket says (after losing its bucket ipam may not know them yet).
 */
export class BlockClaimer {
  readonly layout: BlockLayout;
  private readonly store: IpamStore;
  private readonly now: () => number;
  private readonly onConflict: () => void;
  private readonly claimed = new Set<bigint>();
  private pinned = new Set<bigint>();
  private hint = 0n;

  constructor(
    layout: BlockLayout,
    store: IpamStore,
    now: () => number = Date.now,
    onConflict: () => void = () => undefined,
  ) {
    this.layout = layout;
    this.store = store;
    this.now = now;
    this.onConflict = onConflict;
  }

  /** Blocks of this family known to be claimed (a hint, for the pool gauge). */
  get claimedCount(): number {
    return this.claimed.size;
  }

  get total(): bigint {
    return totalBlocks(this.layout);
  }

  /** Relearns which blocks are claimed from the bucket's keys. */
  async refresh(): Promise<void> {
    this.relearn(await this.store.keys(IpamKey.blockFilter));
  }

  /** Replaces what this claimer believes claimed with the claim keys given. */
  relearn(keys: readonly string[]): void {
    this.claimed.clear();
    for (const k of keys) this.noteKey(k);
  }

  noteKey(key: string): void {
    const b = parseBlockKey(key);
    if (b !== undefined && b.family === this.layout.family) this.note(b.cidr);
  }

  note(cidr: string): void {
    const i = this.indexOf(cidr);
    if (i !== undefined) this.claimed.add(i);
  }

  forget(cidr: string): void {
    const i = this.indexOf(cidr);
    if (i !== undefined) this.claimed.delete(i);
  }

  /** The blocks agents hold, never to be claimed for another node; replaces the previous set. */
  pin(cidrs: Iterable<string>): void {
    const next = new Set<bigint>();
    for (const c of cidrs) {
      const i = this.indexOf(c);
      if (i !== undefined) next.add(i);
    }
    this.pinned = next;
  }

  /** Claims the next free block for `node`; undefined when the pools are exhausted. */
  async claim(node: string): Promise<ClaimedBlock | undefined> {
    const total = totalBlocks(this.layout);
    const taken = (x: bigint): boolean => this.claimed.has(x) || this.pinned.has(x);
    for (let pass = 0; pass < 2; pass++) {
      for (;;) {
        let count = this.claimed.size;
        for (const p of this.pinned) if (!this.claimed.has(p)) count++;
        const i = nextFree(taken, count, 0n, total - 1n, this.hint);
        if (i === undefined) break;
        const block = blockAt(this.layout, i);
        if (block === undefined) break;
        const a = blockAddresses(block);
        const at = this.now();
        const key = IpamKey.block(this.layout.family, a.cidr);
        // Noted before the write: a write that fails may still have happened (a lost ack), and
        // either way the next search should look elsewhere.
        this.claimed.add(i);
        this.hint = i + 1n;
        const rev = await this.store.create(key, { node, at });
        if (rev === 'conflict') {
          this.onConflict();
          // Another replica is claiming in this part of the pool: searching on from here, both
          // would keep colliding on the next block. Carry on from a random place instead.
          this.hint = randomBelow(total);
          continue;
        }
        return {
          family: this.layout.family,
          cidr: a.cidr,
          gateway: a.gateway,
          key,
          revision: rev,
          at,
        };
      }
      // Full as far as this replica knows; blocks may have been returned since.
      await this.refresh();
    }
    return undefined;
  }

  private indexOf(cidr: string): bigint | undefined {
    const c = tryCidrValue(cidr);
    return c === undefined ? undefined : blockIndexOf(this.layout, c);
  }
}

/** A uniform random bigint in [0, n). */
function randomBelow(n: bigint): bigint {
  if (n <= 1n) return 0n;
  const bytes = Math.ceil(n.toString(16).length / 2) + 8;
  return BigInt(`0x${randomBytes(bytes).toString('hex')}`) % n;
}
