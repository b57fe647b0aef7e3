import type { Bus } from '@dyad/bus';
import {
  AGENT_STREAM,
  EndpointReport,
  agentEndpointFilter,
  agentEndpointSubject,
} from '@dyad/contracts';
import type { EndpointStateValue, PayloadOf } from '@dyad/contracts';
import { EndpointFlags } from '@dyad/libbpf-ts';
import type { AgentLogger, EndpointReporter } from './agent.ts';
import type { Endpoint } from './endpoint.ts';

type Report = PayloadOf<typeof EndpointReport>;

/** How an endpoint is reported on NATS. */
export function endpointState(ep: Endpoint, node: string): EndpointStateValue {
  return {
    node,
    containerId: ep.containerId,
    ifName: ep.ifName,
    endpointId: ep.endpointId,
    network: ep.network,
    pod: {
      namespace: ep.pod.namespace,
      name: ep.pod.name,
      ...(ep.pod.uid ? { uid: ep.pod.uid } : {}),
    },
    ...(ep.ipv4 ? { ipv4: ep.ipv4.address } : {}),
    ...(ep.ipv6 ? { ipv6: ep.ipv6.address } : {}),
    mac: ep.mac,
    hostIfName: ep.hostIfName,
    hostIfindex: ep.hostIfindex,
    hostMac: ep.hostMac,
    identity: ep.identity,
    policy: {
      ingress: ep.flags & EndpointFlags.ENFORCE_INGRESS ? 'enforcing' : 'disabled',
      egress: ep.flags & EndpointFlags.ENFORCE_EGRESS ? 'enforcing' : 'disabled',
    },
    createdAt: ep.createdAt,
  };
}

const TOMBSTONE_TTL = '24h';

/**
 * Publishes endpoint reports to the DYAD_AGENT stream (last value per endpoint). Publishes are
 * coalesced per subject and retried with backoff while NATS is away, so the newest state of each
 * endpoint gets there once it is back; CNI calls never wait for it.
 */
export class NatsEndpointReporter implements EndpointReporter {
  readonly #bus: () => Bus | undefined;
  readonly #node: string;
  readonly #logger: AgentLogger;
  readonly #queue = new Map<string, Report>();
  #running: Promise<void> | undefined;
  #closed = false;
  #wake: (() => void) | undefined;

  constructor(bus: () => Bus | undefined, node: string, logger: AgentLogger) {
    this.#bus = bus;
    this.#node = node;
    this.#logger = logger;
  }

  upsert(ep: Endpoint): void {
    this.#enqueue(ep, { op: 'upsert', endpoint: endpointState(ep, this.#node) });
  }

  remove(ep: Endpoint): void {
    this.#enqueue(ep, { op: 'delete', endpoint: endpointState(ep, this.#node) });
  }

  #enqueue(ep: Endpoint, report: Report): void {
    const subject = agentEndpointSubject(this.#node, ep.containerId, ep.ifName);
    this.#queue.delete(subject); // re-insert: newest last
    this.#queue.set(subject, report);
    this.#kick();
  }

  /** Wakes the sender (after a reconnect, or for new work). */
  #kick(): void {
    if (this.#wake) {
      const w = this.#wake;
      this.#wake = undefined;
      w();
    }
    this.#running ??= this.#drain().finally(() => {
      this.#running = undefined;
      if (this.#queue.size > 0 && !this.#closed) this.#kick();
    });
  }

  async #drain(): Promise<void> {
    let backoff = 250;
    while (this.#queue.size > 0 && !this.#closed) {
      const bus = this.#bus();
      const next = this.#queue.entries().next();
      if (next.done) return;
      const [subject, report] = next.value;
      if (bus === undefined || !bus.isConnected()) {
        await this.#sleep(backoff);
        backoff = Math.min(backoff * 2, 10_000);
        continue;
      }
      try {
        await bus.jsPublish(EndpointReport, subject, report, {
          ...(report.op === 'delete' ? { ttl: TOMBSTONE_TTL } : {}),
        });
        // only drop it if nothing newer was queued meanwhile
        if (this.#queue.get(subject) === report) this.#queue.delete(subject);
        backoff = 250;
      } catch (err) {
        this.#logger.warn({ err, subject }, 'endpoint report not published; retrying');
        await this.#sleep(backoff);
        backoff = Math.min(backoff * 2, 10_000);
      }
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  /** Resolves once everything queued is published. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  /**
   * Makes the stream match the local endpoints after a start: reports that are missing or
   * differ are published, reports of endpoints this node no longer has get a tombstone.
   */
  async reconcile(local: readonly Endpoint[]): Promise<{ published: number; tombstoned: number }> {
    const bus = this.#bus();
    if (!bus) return { published: 0, tombstoned: 0 };
    const stored = await bus.snapshot([EndpointReport], {
      stream: AGENT_STREAM,
      filterSubjects: [agentEndpointFilter(this.#node)],
    });
    let published = 0;
    let tombstoned = 0;
    const seen = new Set<string>();
    for (const ep of local) {
      const subject = agentEndpointSubject(this.#node, ep.containerId, ep.ifName);
      seen.add(subject);
      const want = JSON.stringify({ op: 'upsert', endpoint: endpointState(ep, this.#node) });
      const have = stored.get(subject);
      if (have && JSON.stringify(have.value) === want) continue;
      this.upsert(ep);
      published++;
    }
    for (const [subject, d] of stored) {
      if (seen.has(subject) || d.value.op === 'delete') continue;
      this.#queue.set(subject, { op: 'delete', endpoint: d.value.endpoint });
      tombstoned++;
    }
    this.#kick();
    return { published, tombstoned };
  }

  close(): void {
    this.#closed = true;
    this.#wake?.();
  }
}
