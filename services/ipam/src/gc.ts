import type { Family } from '@dyad/netaddr';
import type { NodeRecord } from './record.ts';
import { holdsBlock } from './record.ts';

/**
 * Garbage-collection planning, pure. Pod addresses are the node agents' (they release what their
 * pods no longer use); ipam collects what is its own: the blocks of deleted nodes, and block
 * claims no node record uses. "Gone since" is the node's tombstone time when kube-bridge published
 * one, else the first pass of this process that missed the node: a restarted replica starts
 * counting again, which only delays.
 */

export interface NodesView {
  /** Node name → live, or deleted at (epoch ms of the tombstone). */
  readonly nodes: ReadonlyMap<string, { readonly live: boolean; readonly since: number }>;
}

/** First-missed times carried from one pass to the next, per process; one map per planner. */
export type MissSince = Map<string, number>;

/** When this process first saw `key` in its state (now, if this pass is the first). */
export function firstSeen(since: MissSince, key: string, now: number): number {
  const t = since.get(key) ?? now;
  since.set(key, t);
  return t;
}

/** Forgets the keys a pass did not see in that state, so the map holds only current ones. */
export function forgetUnseen(since: MissSince, seen: ReadonlySet<string>): void {
  for (const k of since.keys()) if (!seen.has(k)) since.delete(k);
}

export interface NodeGcCandidate {
  readonly node: string;
  readonly createdAt: number;
}

export function planNodeGc(
  records: readonly NodeRecord[],
  view: NodesView,
  missed: MissSince,
  now: number,
  graceMs: number,
): NodeGcCandidate[] {
  const out: NodeGcCandidate[] = [];
  const seen = new Set<string>();
  for (const r of records) {
    const v = view.nodes.get(r.name);
    if (v?.live === true) continue;
    const key = `node:${r.name}:${r.createdAt}`;
    seen.add(key);
    const since = firstSeen(missed, key, now);
    const gone = Math.min(since, v === undefined ? Number.POSITIVE_INFINITY : v.since);
    if (now - gone >= graceMs && now - r.createdAt >= graceMs) {
      out.push({ node: r.name, createdAt: r.createdAt });
    }
  }
  forgetUnseen(missed, seen);
  return out;
}

export interface BlockClaim {
  readonly key: string;
  readonly family: Family;
  readonly cidr: string;
  readonly node: string;
  readonly at: number;
  readonly revision: number;
}

/**
 * Claims no record uses: the replica that made them died before writing the node record, lost
 * the race for it and could not withdraw them, or lost a write's ack. Only claims older than the
 * grace period, so a claim whose record is being written right now is left alone; and never a
 * block the claim's node reports holding (`heldBy`): its record is rebuilt from that report.
 */
export function planOrphanBlocks(
  claims: readonly BlockClaim[],
  records: ReadonlyMap<string, NodeRecord>,
  heldBy: (node: string, family: Family, cidr: string) => boolean,
  now: number,
  graceMs: number,
): BlockClaim[] {
  return claims.filter(
    (c) =>
      now - c.at >= graceMs &&
      !holdsBlock(records.get(c.node), c.family, c.cidr) &&
      !heldBy(c.node, c.family, c.cidr),
  );
}
