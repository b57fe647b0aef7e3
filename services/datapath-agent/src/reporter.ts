import type { Bus } from '@dyad/bus';
import {
  AGENT_STREAM,
  EndpointReport,
  agentEndpointFilter,
  agentEndpointSubject,
} from '@dyad/contracts';
import type { EndpointStateValue, PayloadOf } from '@dyad/contracts';
import { EndpointFlags } from '@dyad/libbpf-ts';
import type { EndpointReporter, PublishLatest } from './endpoint-manager.ts';
import { planRecords } from './records.ts';
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
    netns: ep.netns,
    mtu: ep.mtu,
    policy: {
      ingress: ep.flags & EndpointFlags.ENFORCE_INGRESS ? 'enforcing' : 'disabled',
      egress: ep.flags & EndpointFlags.ENFORCE_EGRESS ? 'enforcing' : 'disabled',
    },
    createdAt: ep.createdAt,
  };
}

const TOMBSTONE_TTL = '24h';

/**
 * Endpoint reports on the DYAD_AGENT stream (last value per endpoint), through a publisher that
 * keeps each endpoint's newest report and retries while NATS is away: CNI calls never wait.
 */
export class NatsEndpointReporter implements EndpointReporter {
  readonly #bus: () => Bus | undefined;
  readonly #node: string;
  readonly #out: PublishLatest;

  constructor(bus: () => Bus | undefined, node: string, out: PublishLatest) {
    this.#bus = bus;
    this.#node = node;
    this.#out = out;
  }

  upsert(ep: Endpoint): void {
    this.#send(ep.containerId, ep.ifName, {
      op: 'upsert',
      endpoint: endpointState(ep, this.#node),
    });
  }

  remove(ep: Endpoint): void {
    this.#send(ep.containerId, ep.ifName, {
      op: 'delete',
      endpoint: endpointState(ep, this.#node),
    });
  }

  #send(containerId: string, ifName: string, report: Report): void {
    const subject = agentEndpointSubject(this.#node, containerId, ifName);
    this.#out(EndpointReport, subject, report, {
      ...(report.op === 'delete' ? { ttl: TOMBSTONE_TTL } : {}),
    });
  }

  /**
   * Makes the stream match the local endpoints (after a start, after NATS lost its data):
   * reports that are missing or differ are published, reports of endpoints this node no longer
   * has get a tombstone.
   */
  async reconcile(local: readonly Endpoint[]): Promise<{ published: number; tombstoned: number }> {
    const bus = this.#bus();
    if (!bus) return { published: 0, tombstoned: 0 };
    const stored = await bus.snapshot([EndpointReport], {
      stream: AGENT_STREAM,
      filterSubjects: [agentEndpointFilter(this.#node)],
    });
    const want = new Map<string, Report>();
    for (const ep of local)
      want.set(agentEndpointSubject(this.#node, ep.containerId, ep.ifName), {
        op: 'upsert',
        endpoint: endpointState(ep, this.#node),
      });
    const plan = planRecords(stored, want, (v) => v.op !== 'delete');
    for (const subject of plan.publish) {
      const report = want.get(subject);
      if (report) this.#out(EndpointReport, subject, report);
    }
    for (const [subject, v] of plan.tombstone)
      this.#out(
        EndpointReport,
        subject,
        { op: 'delete', endpoint: v.endpoint },
        { ttl: TOMBSTONE_TTL },
      );
    const published = plan.publish.length;
    const tombstoned = plan.tombstone.length;
    return { published, tombstoned };
  }
}
