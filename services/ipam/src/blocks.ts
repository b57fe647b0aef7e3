import type { Family } from '@dyad/contracts';
import { IpamKey } from '@dyad/contracts';
import { parseCidr } from './addr.ts';
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
 */
export class BlockClaimer {
  readonly layout: BlockLayout;
  private readonly store: IpamStore;
  private readonly now: () => number;
  private readonly claimed = new Set<bigint>();
  private hint = 0n;

  constructor(layout: BlockLayout, store: IpamStore, now: () => number = Date.now) {
    this.layout = layout;
    this.store = store;
    this.now = now;
  }

  /** Relearns which blocks are claimed from the bucket's keys. */
  async refresh(): Promise<void> {
    this.claimed.clear();
    for (const key of await this.store.keys(`${IpamKey.blockPrefix}>`)) this.noteKey(key);
  }

  noteKey(key: string): void {
    const b = parseBlockKey(key);
    if (b === undefined || b.family !== this.layout.family) return;
    const p = parseCidr(b.cidr);
    if (!p.ok) return;
    const i = blockIndexOf(this.layout, p.cidr);
    if (i !== undefined) this.claimed.add(i);
  }

  forget(cidr: string): void {
    const p = parseCidr(cidr);
    if (!p.ok) return;
    const i = blockIndexOf(this.layout, p.cidr);
    if (i !== undefined) this.claimed.delete(i);
  }

  /** Claims the next free block for `node`; undefined when the pools are exhausted. */
  async claim(node: string): Promise<ClaimedBlock | undefined> {
    const total = totalBlocks(this.layout);
    for (let pass = 0; pass < 2; pass++) {
      for (;;) {
        const i = nextFree(
          (x) => this.claimed.has(x),
          this.claimed.size,
          0n,
          total - 1n,
          this.hint,
        );
        if (i === undefined) break;
        const block = blockAt(this.layout, i);
        if (block === undefined) break;
        const a = blockAddresses(block);
        const at = this.now();
        const key = IpamKey.block(this.layout.family, a.cidr);
        const rev = await this.store.create(key, { node, at });
        this.claimed.add(i);
        this.hint = i + 1n;
        if (rev === 'conflict') continue;
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
}
