// Pods created and deleted at a steady rate through the apiserver, as users do, counting every
// operation: attempted, retried (an attempt that failed and was tried again) and failed (given up).
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeApiError } from '../errors.ts';
import type { KubeClient } from '../kube-client.ts';

export const CHAOS_NAMESPACE = 'chaos';
export const ECHO_PORT = 8080;

export interface OpCounts {
  attempted: number;
  failed: number;
  retried: number;
}

/** How long one operation keeps retrying (a fault lasts at most about this long). */
const OP_DEADLINE_MS = 90_000;

export function podBody(name: string, node: string, role: string): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: CHAOS_NAMESPACE, labels: { 'dyad.io/chaos': role } },
    spec: {
      nodeName: node,
      containers: [
        { name: 'main', image: 'none', ports: [{ name: 'echo', containerPort: ECHO_PORT }] },
      ],
    },
  };
}

export class Churn {
  readonly #kube: KubeClient;
  readonly #nodes: readonly string[];
  readonly #intervalMs: number;
  readonly #steady: number;
  readonly #live: string[] = [];
  /** Names of pods this churn deleted: names are never reused, so any trace of one is stale. */
  readonly deleted = new Set<string>();
  counts: OpCounts = { attempted: 0, failed: 0, retried: 0 };
  #next = 0;
  #running = false;
  #loop: Promise<void> | undefined;

  constructor(kube: KubeClient, nodes: readonly string[], intervalMs: number, steady: number) {
    this.#kube = kube;
    this.#nodes = nodes;
    this.#intervalMs = intervalMs;
    this.#steady = steady;
  }

  /** Returns the counts since the last call and starts new ones. */
  takeCounts(): OpCounts {
    const c = this.counts;
    this.counts = { attempted: 0, failed: 0, retried: 0 };
    return c;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run();
  }

  /** Stops issuing operations; resolves once those in flight are done. */
  async pause(): Promise<void> {
    this.#running = false;
    await this.#loop;
  }

  async #run(): Promise<void> {
    const inFlight = new Set<Promise<void>>();
    while (this.#running) {
      const op = this.#step();
      inFlight.add(op);
      void op.finally(() => inFlight.delete(op));
      await sleep(this.#intervalMs);
    }
    await Promise.all(inFlight);
  }

  async #step(): Promise<void> {
    const ops: Promise<void>[] = [];
    const name = `churn-${this.#next}`;
    const node = this.#nodes[this.#next % this.#nodes.length] ?? '';
    this.#next++;
    this.#live.push(name);
    ops.push(this.#create(name, node));
    if (this.#live.length > this.#steady) {
      const old = this.#live.shift();
      if (old !== undefined) ops.push(this.#delete(old));
    }
    await Promise.all(ops);
  }

  #create(name: string, node: string): Promise<void> {
    return this.#op(() =>
      this.#kube
        .tryCall(
          'POST',
          `/api/v1/namespaces/${CHAOS_NAMESPACE}/pods`,
          podBody(name, node, 'churn'),
          undefined,
          [409],
        )
        .then(() => undefined),
    );
  }

  #delete(name: string): Promise<void> {
    this.deleted.add(name);
    return this.#op(() =>
      this.#kube
        .tryCall('DELETE', `/api/v1/namespaces/${CHAOS_NAMESPACE}/pods/${name}`)
        .then(() => undefined),
    );
  }

  /** One operation, retried with backoff while the apiserver is away or refuses for a moment. */
  async #op(attempt: () => Promise<void>): Promise<void> {
    this.counts.attempted++;
    const until = Date.now() + OP_DEADLINE_MS;
    for (let tries = 0; ; tries++) {
      try {
        await attempt();
        return;
      } catch (err) {
        const permanent =
          err instanceof KubeApiError &&
          err.status >= 400 &&
          err.status < 500 &&
          err.status !== 429;
        if (permanent || Date.now() > until) {
          this.counts.failed++;
          return;
        }
        this.counts.retried++;
        await sleep(Math.min(2000, 250 * 2 ** Math.min(tries, 3)));
      }
    }
  }
}
