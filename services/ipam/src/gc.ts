import type { Family } from '@dyad/contracts';
import type { NodeRecord, SlotRecord } from './record.ts';

/**
 * Garbage-collection planning, pure. The rule that keeps it safe: an address is released only if
 * its pod has been gone (deleted, finished, or absent from kube-bridge's stream) for the whole
 * grace period and was allocated longer ago than that; a pod in the stream is never touched.
 * "Gone since" is the tombstone's time when kube-bridge published one, else the first pass of
 * this process that missed the pod: a restarted replica starts counting again, which only delays.
 */

export interface PodsView {
  /** UIDs of pods that exist and have not finished. */
  readonly live: ReadonlySet<string>;
  /** Pod UID → epoch ms of the tombstone (the pod's deletion) or of its finishing. */
  readonly goneAt: ReadonlyMap<string, number>;
}

export interface NodesView {
  /** Node name → live, or deleted at (epoch ms of the tombstone). */
  readonly nodes: ReadonlyMap<string, { readonly live: boolean; readonly since: number }>;
}

/** A slot claim as GC sees it: where, which revision, and what it holds. */
export interface SlotView {
  readonly node: string;
  readonly slot: number;
  readonly rev: number;
  readonly record: SlotRecord;
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

/**
 * Slots whose pod has been gone for the grace period, and allocated longer ago than that. A pod
 * kube-bridge says is deleted or finished counts from that time with `graceMs`; a pod merely
 * absent from the stream (never seen, or its tombstone expired) needs `absentGraceMs`, longer,
 * because absence is also what a kube-bridge lagging behind new pods looks like.
 */
export function planPodGc(
  slots: readonly SlotView[],
  pods: PodsView,
  missed: MissSince,
  now: number,
  graceMs: number,
  absentGraceMs: number = graceMs,
): SlotView[] {
  const out: SlotView[] = [];
  const seen = new Set<string>();
  for (const s of slots) {
    const p = s.record;
    if (pods.live.has(p.podUid)) continue;
    const key = `${s.node}/${s.slot}/${s.rev}`;
    seen.add(key);
    const since = firstSeen(missed, key, now);
    const goneAt = pods.goneAt.get(p.podUid);
    const wait = goneAt === undefined ? absentGraceMs : graceMs;
    const gone = Math.min(since, goneAt ?? Number.POSITIVE_INFINITY);
    if (now - gone >= wait && now - p.at >= wait) out.push(s);
  }
  forgetUnseen(missed, seen);
  return out;
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
 * Claims no record uses: the replica that made them died before writing the node record, or lost
 * the race for it and died before withdrawing. Only claims older than the grace period, so a claim
 * whose record is being written right now is left alone.
 */
export function planOrphanBlocks(
  claims: readonly BlockClaim[],
  records: ReadonlyMap<string, NodeRecord>,
  now: number,
  graceMs: number,
): BlockClaim[] {
  return claims.filter((c) => {
    if (now - c.at < graceMs) return false;
    const r = records.get(c.node);
    return r?.blocks[c.family]?.cidr !== c.cidr;
  });
}
