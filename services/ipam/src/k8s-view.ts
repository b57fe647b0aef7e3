import type { Bus, BusConsumer, JsDelivery } from '@dyad/bus';
import type { NodeObject, PayloadOf } from '@dyad/contracts';
import { K8S_STREAM, NodeEvent, k8sKindFilter } from '@dyad/contracts';
import type { NodeInfo, NodeStatus } from './assigner.ts';

/**
 * What ipam knows of Kubernetes: the nodes, from kube-bridge's DYAD_K8S stream only (a snapshot,
 * then a consumer that keeps it current).
 */
export interface NodeState {
  readonly live: boolean;
  /** Epoch ms: when it was first seen live, or when it was deleted. */
  readonly since: number;
  readonly uid: string;
}

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

  info(name: string): NodeInfo {
    return { status: this.status(name), uid: this.nodes.get(name)?.uid ?? '' };
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
