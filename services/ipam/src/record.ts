import type { Family, IpamNodeRecordValue, IpamPodRecordValue } from '@dyad/contracts';
import { IpamErrorCode } from '@dyad/contracts';
import type { CidrValue } from './addr.ts';
import { formatAddress, parseAddress, parseCidr } from './addr.ts';
import { blockAddresses, nextFree } from './carve.ts';

/**
 * A node record (`node.<name>` in the KV) and the pure operations on it. A batch of operations is
 * applied to a copy; the copy is written with a revision check, and on a conflict the same batch
 * is applied again to the fresh record. So the answer every operation gets is computed from the
 * state that was actually stored, whichever replica wrote before.
 */
export type NodeRecord = IpamNodeRecordValue;
export type PodRecord = IpamPodRecordValue;
export type BlockRef = { readonly cidr: string; readonly gateway: string };

export interface ParsedBlock {
  readonly cidr: string;
  readonly gateway: string;
  readonly value: CidrValue;
  readonly first: bigint;
  readonly last: bigint;
}

/** What a record implies, kept beside it so a batch does not re-parse every address. */
export interface RecordIndex {
  readonly blocks: ReadonlyMap<Family, ParsedBlock>;
  /** Taken offsets per family, relative to the block base. */
  readonly taken: ReadonlyMap<Family, ReadonlySet<bigint>>;
}

export interface ApplyContext {
  readonly now: number;
  /** Enabled families in the cluster's order, primary first. */
  readonly families: readonly Family[];
  /** Release markers older than this are dropped. */
  readonly releasedTtlMs: number;
  /** At most this many release markers are kept (the newest). */
  readonly releasedMax: number;
}

export type Op =
  | {
      readonly kind: 'allocate';
      readonly containerId: string;
      readonly namespace: string;
      readonly pod: string;
      readonly podUid: string;
      /** Already checked against the enabled families. */
      readonly families: readonly Family[];
    }
  | { readonly kind: 'release'; readonly containerId?: string; readonly podUid?: string }
  /** GC: release only if the entry is still the one the GC saw (same pod UID and time). */
  | {
      readonly kind: 'gc-release';
      readonly containerId: string;
      readonly podUid: string;
      readonly at: number;
    }
  /** Creates the record, or adds blocks of families it lacks; blocks already claimed in the KV. */
  | {
      readonly kind: 'add-blocks';
      readonly name: string;
      readonly uid: string;
      readonly blocks: Readonly<Partial<Record<Family, BlockRef>>>;
    }
  /** Removes the record if it is still the incarnation the GC saw. */
  | { readonly kind: 'delete-node'; readonly createdAt: number };

export interface Owner {
  readonly containerId: string;
  readonly pod: PodRecord;
}

export type OpResult =
  | {
      readonly kind: 'allocated';
      readonly owner: Owner;
      readonly created: boolean;
      /** The node's blocks, for the reply's cidr and gateway. */
      readonly blocks: NodeRecord['blocks'];
    }
  | { readonly kind: 'released'; readonly owners: readonly Owner[]; readonly already: boolean }
  | { readonly kind: 'blocks'; readonly added: readonly Family[] }
  | { readonly kind: 'node-deleted'; readonly record: NodeRecord }
  | { readonly kind: 'skipped' }
  | {
      readonly kind: 'error';
      readonly code: string;
      readonly message: string;
      /** Set for exhaustion and a missing block: which family. */
      readonly family?: Family;
      /** `no-block`: the node has no block of the family yet (the caller may claim one). */
      readonly reason?: 'node-block' | 'no-block' | 'no-record';
    };

export interface ApplyOutcome {
  /** undefined: the record is to be deleted (or stays absent). */
  readonly record: NodeRecord | undefined;
  readonly index: RecordIndex;
  readonly results: readonly OpResult[];
  /** False when nothing is to be written. */
  readonly changed: boolean;
}

export const EMPTY_INDEX: RecordIndex = { blocks: new Map(), taken: new Map() };

function parseBlock(ref: BlockRef): ParsedBlock {
  const p = parseCidr(ref.cidr);
  if (!p.ok) throw new Error(`node record holds an invalid block ${ref.cidr}: ${p.reason}`);
  const a = blockAddresses(p.cidr);
  return { cidr: ref.cidr, gateway: ref.gateway, value: p.cidr, first: a.first, last: a.last };
}

export function indexRecord(record: NodeRecord | undefined): RecordIndex {
  if (record === undefined) return EMPTY_INDEX;
  const blocks = new Map<Family, ParsedBlock>();
  const taken = new Map<Family, Set<bigint>>();
  for (const f of ['IPv4', 'IPv6'] as const) {
    const ref = record.blocks[f];
    if (ref === undefined) continue;
    const b = parseBlock(ref);
    blocks.set(f, b);
    const set = new Set<bigint>();
    for (const p of Object.values(record.pods)) {
      const ip = p.ips[f];
      if (ip === undefined) continue;
      const a = parseAddress(ip);
      if (a !== undefined) set.add(a.value - b.value.base);
    }
    taken.set(f, set);
  }
  return { blocks, taken };
}

/** Applies a batch in order; every op sees the effects of the ops before it. */
export function applyOps(
  current: NodeRecord | undefined,
  currentIndex: RecordIndex,
  ops: readonly Op[],
  ctx: ApplyContext,
): ApplyOutcome {
  let record: NodeRecord | undefined =
    current === undefined
      ? undefined
      : {
          ...current,
          blocks: { ...current.blocks },
          last: { ...current.last },
          pods: { ...current.pods },
          released: { ...current.released },
        };
  const blocks = new Map(currentIndex.blocks);
  const taken = new Map<Family, Set<bigint>>();
  const takenOf = (f: Family): Set<bigint> => {
    let s = taken.get(f);
    if (s === undefined) {
      s = new Set(currentIndex.taken.get(f) ?? []);
      taken.set(f, s);
    }
    return s;
  };
  let changed = false;
  const results: OpResult[] = [];

  const noRecord = (): OpResult => ({
    kind: 'error',
    code: IpamErrorCode.unknownNode,
    message: 'the node has no IPAM record',
    reason: 'no-record',
  });

  for (const op of ops) {
    switch (op.kind) {
      case 'allocate': {
        if (record === undefined) {
          results.push(noRecord());
          break;
        }
        const existing = record.pods[op.containerId];
        if (existing !== undefined && existing.podUid !== op.podUid) {
          results.push({
            kind: 'error',
            code: IpamErrorCode.ownerMismatch,
            message: `container ${op.containerId} holds addresses for pod UID ${existing.podUid}, not ${op.podUid}`,
          });
          break;
        }
        const missing = op.families.filter((f) => existing?.ips[f] === undefined);
        if (existing !== undefined && missing.length === 0) {
          results.push({
            kind: 'allocated',
            owner: { containerId: op.containerId, pod: existing },
            created: false,
            blocks: record.blocks,
          });
          break;
        }
        // Choose every missing family first, so exhaustion of one leaves the record untouched.
        const chosen: [Family, bigint, ParsedBlock][] = [];
        let failure: OpResult | undefined;
        for (const f of missing) {
          const b = blocks.get(f);
          if (b === undefined) {
            failure = {
              kind: 'error',
              code: IpamErrorCode.exhausted,
              message: `node ${record.name} has no ${f} block`,
              family: f,
              reason: 'no-block',
            };
            break;
          }
          const set = takenOf(f);
          const lastText = record.last[f];
          const lastAddr = lastText === undefined ? undefined : parseAddress(lastText);
          const start = lastAddr === undefined ? b.first : lastAddr.value - b.value.base + 1n;
          const off = nextFree((o) => set.has(o), set.size, b.first, b.last, start);
          if (off === undefined) {
            failure = {
              kind: 'error',
              code: IpamErrorCode.exhausted,
              message: `node ${record.name} has no free ${f} address in ${b.cidr} (${set.size} in use)`,
              family: f,
              reason: 'node-block',
            };
            break;
          }
          chosen.push([f, off, b]);
        }
        if (failure !== undefined) {
          results.push(failure);
          break;
        }
        const ips: { IPv4?: string; IPv6?: string } = { ...existing?.ips };
        for (const [f, off, b] of chosen) {
          const ip = formatAddress(f, b.value.base + off);
          ips[f] = ip;
          takenOf(f).add(off);
          record.last[f] = ip;
        }
        const pod: PodRecord = existing ?? {
          namespace: op.namespace,
          pod: op.pod,
          podUid: op.podUid,
          ips,
          at: ctx.now,
        };
        const stored: PodRecord = { ...pod, ips };
        record.pods[op.containerId] = stored;
        Reflect.deleteProperty(record.released, op.containerId);
        changed = true;
        results.push({
          kind: 'allocated',
          owner: { containerId: op.containerId, pod: stored },
          created: true,
          blocks: record.blocks,
        });
        break;
      }

      case 'release': {
        if (record === undefined) {
          results.push(noRecord());
          break;
        }
        const targets = Object.entries(record.pods).filter(
          ([cid, p]) =>
            (op.containerId === undefined || cid === op.containerId) &&
            (op.podUid === undefined || p.podUid === op.podUid),
        );
        if (targets.length === 0) {
          const seen = Object.entries(record.released).some(
            ([cid, m]) =>
              (op.containerId === undefined || cid === op.containerId) &&
              (op.podUid === undefined || m.podUid === op.podUid),
          );
          results.push(
            seen
              ? { kind: 'released', owners: [], already: true }
              : {
                  kind: 'error',
                  code: IpamErrorCode.notAllocated,
                  message: `nothing is allocated on node ${record.name} to ${describeRelease(op)}`,
                },
          );
          break;
        }
        const owners: Owner[] = [];
        for (const [cid, p] of targets) {
          freePod(record, cid, p, blocks, takenOf);
          record.released[cid] = { podUid: p.podUid, at: ctx.now };
          owners.push({ containerId: cid, pod: p });
        }
        changed = true;
        results.push({ kind: 'released', owners, already: false });
        break;
      }

      case 'gc-release': {
        const p = record?.pods[op.containerId];
        if (record === undefined || p === undefined || p.podUid !== op.podUid || p.at !== op.at) {
          results.push({ kind: 'skipped' });
          break;
        }
        freePod(record, op.containerId, p, blocks, takenOf);
        record.released[op.containerId] = { podUid: p.podUid, at: ctx.now };
        changed = true;
        results.push({
          kind: 'released',
          owners: [{ containerId: op.containerId, pod: p }],
          already: false,
        });
        break;
      }

      case 'add-blocks': {
        if (record === undefined) {
          record = {
            v: 1,
            name: op.name,
            uid: op.uid,
            blocks: {},
            last: {},
            pods: {},
            released: {},
            createdAt: ctx.now,
          };
          changed = true;
        }
        const added: Family[] = [];
        for (const f of ['IPv4', 'IPv6'] as const) {
          const ref = op.blocks[f];
          if (ref === undefined || record.blocks[f] !== undefined) continue;
          record.blocks[f] = { cidr: ref.cidr, gateway: ref.gateway };
          blocks.set(f, parseBlock(ref));
          taken.set(f, new Set());
          added.push(f);
          changed = true;
        }
        results.push({ kind: 'blocks', added });
        break;
      }

      case 'delete-node': {
        if (record === undefined || record.createdAt !== op.createdAt) {
          results.push({ kind: 'skipped' });
          break;
        }
        results.push({ kind: 'node-deleted', record });
        record = undefined;
        blocks.clear();
        taken.clear();
        changed = true;
        break;
      }
    }
  }

  if (record !== undefined && changed) pruneReleased(record, ctx);
  const index: RecordIndex =
    record === undefined
      ? EMPTY_INDEX
      : {
          blocks,
          taken: new Map(
            [...blocks.keys()].map((f) => [
              f,
              taken.get(f) ?? currentIndex.taken.get(f) ?? new Set(),
            ]),
          ),
        };
  return { record, index, results, changed };
}

function freePod(
  record: NodeRecord,
  cid: string,
  p: PodRecord,
  blocks: ReadonlyMap<Family, ParsedBlock>,
  takenOf: (f: Family) => Set<bigint>,
): void {
  Reflect.deleteProperty(record.pods, cid);
  for (const f of ['IPv4', 'IPv6'] as const) {
    const ip = p.ips[f];
    const b = blocks.get(f);
    if (ip === undefined || b === undefined) continue;
    const a = parseAddress(ip);
    if (a !== undefined) takenOf(f).delete(a.value - b.value.base);
  }
}

function pruneReleased(record: NodeRecord, ctx: ApplyContext): void {
  const entries = Object.entries(record.released);
  const fresh = entries.filter(([, m]) => ctx.now - m.at < ctx.releasedTtlMs);
  if (fresh.length === entries.length && fresh.length <= ctx.releasedMax) return;
  fresh.sort((a, b) => b[1].at - a[1].at);
  record.released = Object.fromEntries(fresh.slice(0, ctx.releasedMax));
}

function describeRelease(op: { containerId?: string; podUid?: string }): string {
  const parts: string[] = [];
  if (op.containerId !== undefined) parts.push(`container ${op.containerId}`);
  if (op.podUid !== undefined) parts.push(`pod UID ${op.podUid}`);
  return parts.join(' and ');
}

/** The pod's addresses in the cluster's family order, as the reply and events carry them. */
export function orderedAddresses(
  pod: PodRecord,
  families: readonly Family[],
): { family: Family; address: string }[] {
  const out: { family: Family; address: string }[] = [];
  const order = [...families, ...(['IPv4', 'IPv6'] as const).filter((f) => !families.includes(f))];
  for (const f of order) {
    const ip = pod.ips[f];
    if (ip !== undefined) out.push({ family: f, address: ip });
  }
  return out;
}

/** Used and free pod addresses per family of a record, for metrics and `dyad ipam list`. */
export function usage(index: RecordIndex): { family: Family; used: number; free: number }[] {
  return [...index.blocks].map(([f, b]) => {
    const usable = b.last >= b.first ? b.last - b.first + 1n : 0n;
    const used = index.taken.get(f)?.size ?? 0;
    return { family: f, used, free: Number(usable - BigInt(used)) };
  });
}
