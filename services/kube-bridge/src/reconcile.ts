/**
 * What the stream must change to match the API server. Pure: kube-bridge runs it after every
 * (re)list and periodically, so objects deleted while it was down or while NATS was away get
 * their tombstone, and objects whose last publish was lost get published again.
 */
export interface Version {
  readonly uid: string;
  readonly resourceVersion: string;
}

export interface StreamEntry extends Version {
  readonly op: 'upsert' | 'delete';
}

export interface ReconcilePlan {
  /** Subjects whose current object must be (re)published. */
  readonly upserts: readonly string[];
  /** Subjects that hold a live object the API server no longer has. */
  readonly tombstones: readonly string[];
}

export function planReconcile(
  stream: ReadonlyMap<string, StreamEntry>,
  current: ReadonlyMap<string, Version>,
): ReconcilePlan {
  const upserts: string[] = [];
  const tombstones: string[] = [];
  for (const [subject, v] of current) {
    const s = stream.get(subject);
    if (
      s === undefined ||
      s.op === 'delete' ||
      s.uid !== v.uid ||
      s.resourceVersion !== v.resourceVersion
    ) {
      upserts.push(subject);
    }
  }
  for (const [subject, s] of stream) {
    if (s.op === 'upsert' && !current.has(subject)) tombstones.push(subject);
  }
  return { upserts: upserts.sort(), tombstones: tombstones.sort() };
}
