import type { Family } from '@dyad/netaddr';
import type { NodeBlockValue } from '@dyad/contracts';
import { canonicalBlock } from './record.ts';

interface Report {
  readonly blocks: readonly NodeBlockValue[];
  /** Stream sequence of the report: an older one never replaces a newer one. */
  readonly seq: number;
  /** This view's generation when the report was taken in (see `refresh`). */
  readonly generation: number;
}

/**
 * The blocks each node's agent says it holds (NodeBlocksHeld, last value per node in stream
 * DYAD_IPAM_ALLOCATIONS), as this replica has read them. The agents' word is authoritative: a
 * block held here is never given to another node, and a node whose record is gone gets it back
 * from its report. Fed by a snapshot, then a consumer; a report purged from the stream (a deleted
 * node's) is not a message, so a fresh snapshot now and then (`refresh`) forgets it.
 */
export class HeldView {
  private readonly reports = new Map<string, Report>();
  private generation = 0;

  /** Takes a report in; false when it is older than the one already known. */
  apply(node: string, blocks: readonly NodeBlockValue[], seq: number): boolean {
    const prev = this.reports.get(node);
    if (prev !== undefined && prev.seq > seq) return false;
    this.reports.set(node, { blocks, seq, generation: this.generation });
    return true;
  }

  forget(node: string): void {
    this.reports.delete(node);
  }

  /** A generation mark to take before reading a snapshot for `refresh`. */
  mark(): number {
    return ++this.generation;
  }

  /**
   * Replaces the view with a snapshot read after `mark`: every report in it is taken in, and a
   * node absent from it is forgotten unless its report arrived after the mark (the snapshot may
   * have been read before that report was stored).
   */
  refresh(mark: number, snapshot: ReadonlyMap<string, Omit<Report, 'generation'>>): void {
    for (const [node, r] of this.reports) {
      if (!snapshot.has(node) && r.generation < mark) this.reports.delete(node);
    }
    for (const [node, r] of snapshot) this.apply(node, r.blocks, r.seq);
  }

  /** The blocks `node`'s agent reports, in its order; empty when it reported none. */
  blocks(node: string): readonly NodeBlockValue[] {
    return this.reports.get(node)?.blocks ?? [];
  }

  get nodes(): string[] {
    return [...this.reports.keys()];
  }

  /** Whether `node`'s agent has reported at all (an empty report counts: it holds nothing). */
  reported(node: string): boolean {
    return this.reports.has(node);
  }

  /** Whether `node`'s agent reports holding this block (CIDRs compared canonical). */
  heldBy(node: string, family: Family, cidr: string): boolean {
    const want = canonicalBlock(family, cidr)?.cidr;
    return this.blocks(node).some(
      (b) => b.family === family && canonicalBlock(family, b.cidr)?.cidr === want,
    );
  }

  /** Every block of `family` some agent reports holding. */
  cidrs(family: Family): string[] {
    const out: string[] = [];
    for (const r of this.reports.values()) {
      for (const b of r.blocks) if (b.family === family) out.push(b.cidr);
    }
    return out;
  }
}
