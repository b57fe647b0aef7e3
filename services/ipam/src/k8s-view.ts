import type { Bus, BusConsumer, JsDelivery } from '@dyad/bus';
import type { NodeObject, PayloadOf, PodObject } from '@dyad/contracts';
import { K8S_STREAM, NodeEvent, PodEvent, k8sKindFilter } from '@dyad/contracts';
import type { PodsView } from './gc.ts';

/**
 * What ipam knows of Kubernetes, from kube-bridge's DYAD_K8S stream only: the nodes (kept
 * current by a consumer) and, once per GC pass, the pods (a snapshot).
 */
export interface NodeState {
  readonly live: boolean;
  /** Epoch ms: when it was first seen live, or when it was deleted. */
  readonly since: number;
  readonly uid: string;
}

export type NodeStatus = 'live' | 'deleted' | 'unknown';

function eventTime(d: { meta: { time: string } }, fallback: number): number {
  const t = Date.parse(d.meta.time);
  return Number.isNaN(t) ? fallback : t;
}

export class NodeView {
  readonly nodes = new Map<string, NodeState>();
  private consumer: BusConsumer | undefined;
  private readonly onLive: (name: string, node: NodeObject) => void;

  constructor(onLive: (name: string, node: NodeObject) => void) {
    this.onLive = onLive;
  }

  status(name: string): NodeStatus {
    const n = this.nodes.get(name);
    if (n === undefined) return 'unknown';
    return n.live ? 'live' : 'deleted';
  }

  /** Reads the current nodes, then follows changes from just after what it read. */
  async start(bus: Bus): Promise<void> {
    const filter = k8sKindFilter('Node');
    const snap = await bus.snapshot([NodeEvent], { stream: K8S_STREAM, filterSubjects: [filter] });
    let maxSeq = 0;
    for (const d of snap.values()) {
      maxSeq = Math.max(maxSeq, d.streamSeq);
      this.apply(d);
    }
    this.consumer = await bus.consume(
      [NodeEvent],
      {
        stream: K8S_STREAM,
        filterSubjects: [filter],
        ...(maxSeq > 0 ? { startSeq: maxSeq + 1 } : { deliverPolicy: 'all' as const }),
      },
      (d) => {
        this.apply(d);
      },
    );
  }

  async stop(): Promise<void> {
    await this.consumer?.stop();
  }

  private apply(d: JsDelivery<PayloadOf<typeof NodeEvent>>): void {
    const { op, object } = d.value;
    const name = object.metadata.name;
    const now = Date.now();
    if (op === 'delete') {
      this.nodes.set(name, { live: false, since: eventTime(d, now), uid: object.metadata.uid });
      return;
    }
    const prev = this.nodes.get(name);
    if (prev?.live !== true) {
      this.nodes.set(name, { live: true, since: now, uid: object.metadata.uid });
    }
    this.onLive(name, object);
  }
}

const FINISHED = new Set(['Succeeded', 'Failed']);

/** Pods that hold addresses (not deleted, not finished) and when the others went away. */
export function podsViewOf(events: Iterable<JsDelivery<PayloadOf<typeof PodEvent>>>): PodsView {
  const live = new Set<string>();
  const goneAt = new Map<string, number>();
  const now = Date.now();
  for (const d of events) {
    const pod: PodObject = d.value.object;
    const uid = pod.metadata.uid;
    if (d.value.op === 'upsert' && !FINISHED.has(pod.status.phase ?? '')) live.add(uid);
    else goneAt.set(uid, eventTime(d, now));
  }
  // A UID is live if any subject says so (a pod recreated under another name keeps no UID).
  for (const uid of live) goneAt.delete(uid);
  return { live, goneAt };
}

export async function readPods(bus: Bus): Promise<PodsView> {
  const snap = await bus.snapshot([PodEvent], {
    stream: K8S_STREAM,
    filterSubjects: [k8sKindFilter('Pod')],
  });
  return podsViewOf(snap.values());
}
