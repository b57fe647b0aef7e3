import { KubeApiError } from './errors.ts';
import type { KubeClient } from './kube-client.ts';
import type { Family } from '@dyad/netaddr';

export interface NodeIdentity {
  readonly name: string;
  readonly addresses: Partial<Record<Family, string>>;
  /** Primary family first. */
  readonly families: readonly Family[];
  readonly labels: Readonly<Record<string, string>>;
}

const CAPACITY = { cpu: '8', memory: '16Gi', pods: '110', 'ephemeral-storage': '100Gi' };

/** RFC 3339 with microseconds, as Lease renewTime wants it. */
function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

function nodeStatus(node: NodeIdentity, now: Date) {
  const t = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  const condition = (type: string, status: string, reason: string, message: string) => ({
    type,
    status,
    reason,
    message,
    lastHeartbeatTime: t,
    lastTransitionTime: t,
  });
  return {
    addresses: [
      ...node.families.flatMap((f) => {
        const a = node.addresses[f];
        return a === undefined ? [] : [{ type: 'InternalIP', address: a }];
      }),
      { type: 'Hostname', address: node.name },
    ],
    capacity: CAPACITY,
    allocatable: CAPACITY,
    conditions: [
      condition('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'lab node'),
      condition('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'lab node'),
      condition('PIDPressure', 'False', 'KubeletHasSufficientPID', 'lab node'),
      condition('Ready', 'True', 'KubeletReady', 'Dyad lab pod runtime is posting ready status'),
    ],
    nodeInfo: {
      machineID: node.name,
      systemUUID: node.name,
      bootID: node.name,
      kernelVersion: '',
      osImage: 'Dyad lab',
      containerRuntimeVersion: 'dyad-lab://1',
      kubeletVersion: 'dyad-lab',
      kubeProxyVersion: '',
      operatingSystem: 'linux',
      architecture: 'amd64',
    },
  };
}

/**
 * What a kubelet does for its Node, minus everything about containers: registers the Node,
 * posts its addresses (the node's fabric addresses, both families) and a Ready condition, and
 * renews its Lease so the node lifecycle controller keeps it Ready and never evicts lab pods.
 */
export class NodeHeartbeat {
  readonly #kube: KubeClient;
  readonly #node: NodeIdentity;
  #timer: NodeJS.Timeout | undefined;
  #statusAt = 0;

  constructor(kube: KubeClient, node: NodeIdentity) {
    this.#kube = kube;
    this.#node = node;
  }

  async register(): Promise<void> {
    const name = this.#node.name;
    const existing = await this.#kube.tryCall('GET', `/api/v1/nodes/${name}`);
    if (existing === undefined) {
      await this.#kube.tryCall(
        'POST',
        '/api/v1/nodes',
        {
          apiVersion: 'v1',
          kind: 'Node',
          metadata: { name, labels: this.#node.labels },
        },
        undefined,
        [409],
      );
    }
    await this.#postStatus();
    await this.#renewLease();
  }

  start(intervalMs = 10_000): void {
    const tick = async (): Promise<void> => {
      try {
        await this.#renewLease();
        if (Date.now() - this.#statusAt > 60_000) await this.#postStatus();
      } catch {
        // the apiserver may be restarting; next tick
      }
      this.#timer = setTimeout(() => void tick(), intervalMs);
    };
    this.#timer = setTimeout(() => void tick(), intervalMs);
  }

  stop(): void {
    clearTimeout(this.#timer);
  }

  async #postStatus(): Promise<void> {
    await this.#kube.call(
      'PATCH',
      `/api/v1/nodes/${this.#node.name}/status`,
      { status: nodeStatus(this.#node, new Date()) },
      'application/merge-patch+json',
    );
    this.#statusAt = Date.now();
  }

  async #renewLease(): Promise<void> {
    const name = this.#node.name;
    const path = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${name}`;
    const spec = {
      holderIdentity: name,
      leaseDurationSeconds: 40,
      renewTime: microTime(new Date()),
    };
    try {
      await this.#kube.call('PATCH', path, { spec }, 'application/merge-patch+json');
    } catch (err) {
      if (!(err instanceof KubeApiError) || err.status !== 404) throw err;
      await this.#kube.tryCall(
        'POST',
        '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases',
        { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name }, spec },
        undefined,
        [409],
      );
    }
  }
}
