import { StoreError } from './errors.ts';
import type { ApplyContext, NodeRecord, Op, OpResult, RecordIndex } from './record.ts';
import { applyOps, indexRecord } from './record.ts';
import type { IpamStore } from './store.ts';

/**
 * Group commit for one node record in one replica: requests that arrive while a write is in
 * flight are applied together in the next write. At most one write per node is in flight here;
 * other replicas write the same record concurrently, and the revision check sorts that out: the
 * loser reads the record again and re-applies its whole batch, so every answer is computed from
 * the state that was stored. Nothing in this process decides alone.
 */
export interface QueueDeps {
  readonly store: IpamStore;
  readonly context: () => ApplyContext;
  /** Called after each successful write with what is now stored. */
  readonly onStored?: (node: string, record: NodeRecord | undefined, index: RecordIndex) => void;
  readonly onConflict?: (node: string) => void;
  readonly onBatch?: (node: string, size: number) => void;
  readonly maxBatch?: number;
  readonly maxAttempts?: number;
}

interface Pending {
  readonly op: Op;
  readonly resolve: (r: OpResult) => void;
  readonly reject: (e: unknown) => void;
}

interface Cached {
  readonly record: NodeRecord | undefined;
  readonly revision: number;
  readonly index: RecordIndex;
}

const DEFAULT_MAX_BATCH = 512;
const DEFAULT_MAX_ATTEMPTS = 64;

export class NodeQueue {
  readonly node: string;
  private readonly deps: QueueDeps;
  private pending: Pending[] = [];
  private running: Promise<void> | undefined;
  private cached: Cached | undefined;

  constructor(node: string, deps: QueueDeps) {
    this.node = node;
    this.deps = deps;
  }

  submit(op: Op): Promise<OpResult> {
    return new Promise<OpResult>((resolve, reject) => {
      this.pending.push({ op, resolve, reject });
      this.running ??= this.drain().finally(() => {
        this.running = undefined;
      });
    });
  }

  /** The record as this replica last stored or read it; reads it when nothing is cached. */
  async peek(): Promise<NodeRecord | undefined> {
    if (this.cached !== undefined) return this.cached.record;
    const s = await this.deps.store.getNode(this.node);
    return s?.value;
  }

  /** Drops the cached record, e.g. after another replica's GC removed the node. */
  forget(): void {
    this.cached = undefined;
  }

  get idle(): boolean {
    return this.running === undefined && this.pending.length === 0;
  }

  private async drain(): Promise<void> {
    const max = this.deps.maxBatch ?? DEFAULT_MAX_BATCH;
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, max);
      this.deps.onBatch?.(this.node, batch.length);
      try {
        const results = await this.commit(batch.map((p) => p.op));
        batch.forEach((p, i) => p.resolve(results[i] as OpResult));
      } catch (err) {
        // The write may or may not have landed: read again before trusting anything cached.
        this.cached = undefined;
        for (const p of batch) p.reject(err);
      }
    }
  }

  private async load(): Promise<Cached> {
    const s = await this.deps.store.getNode(this.node);
    return s === undefined
      ? { record: undefined, revision: 0, index: indexRecord(undefined) }
      : { record: s.value, revision: s.revision, index: indexRecord(s.value) };
  }

  private async commit(ops: readonly Op[]): Promise<readonly OpResult[]> {
    const attempts = this.deps.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    for (let attempt = 0; attempt < attempts; attempt++) {
      let fresh = false;
      if (this.cached === undefined) {
        this.cached = await this.load();
        fresh = true;
      }
      const base = this.cached;
      const out = applyOps(base.record, base.index, ops, this.deps.context());
      if (!out.changed) {
        // Nothing to write, but the answers (a repeated request, not-allocated, exhausted) must
        // come from the stored state, not from a copy another replica may have changed since.
        if (fresh) return out.results;
        const rev = await this.deps.store.nodeRevision(this.node);
        if (rev === base.revision) return out.results;
        this.cached = undefined;
        continue;
      }
      const written = await this.deps.store.writeNode(this.node, out.record, base.revision);
      if (written === 'conflict') {
        this.deps.onConflict?.(this.node);
        this.cached = undefined;
        if (attempt >= 2) await sleep(Math.random() * 2 * attempt);
        continue;
      }
      this.cached = { record: out.record, revision: written, index: out.index };
      this.deps.onStored?.(this.node, out.record, out.index);
      return out.results;
    }
    throw new StoreError(
      `node ${this.node}: the record kept changing under ${attempts} attempts to write it`,
    );
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
