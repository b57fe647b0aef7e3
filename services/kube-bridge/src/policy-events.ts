import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Bus, BusConsumer } from '@dyad/bus';
import { backoffDelay } from '@dyad/bus';
import type { PayloadOf } from '@dyad/contracts';
import { POLICY_STREAM, PolicyFilter, PolicyStatusEvent } from '@dyad/contracts';
import { ApiException, EventsV1Api } from '@kubernetes/client-node';
import type { EventsV1Event, KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';

// A NetworkPolicy that Dyad does not enforce exactly as written gets a Warning Event on the
// object, so `kubectl describe networkpolicy` says what `dyad policy get` says. kube-bridge
// writes it because it is the one component that holds Kubernetes credentials; the policy
// service only publishes the status on NATS.

type Status = Extract<PayloadOf<typeof PolicyStatusEvent>, { op: 'upsert' }>;

export const EVENT_REASON = 'NotEnforcedAsWritten';
export const REPORTING_CONTROLLER = 'dyad.io/policy';
/** The API limits an Event's note to 1 kB. */
const NOTE_MAX = 1024;

/**
 * The Event for one status, or none when the policy is enforced as written. Its name is derived
 * from the object's uid, resourceVersion and problems, so a replay after a restart (or a second
 * replica) creates nothing new: the apiserver answers AlreadyExists.
 */
export function problemEvent(s: Status, instance: string, now: Date): EventsV1Event | undefined {
  if (s.problems.length === 0) return undefined;
  const digest = createHash('sha256')
    .update(JSON.stringify([s.uid, s.resourceVersion, s.problems]))
    .digest('hex')
    .slice(0, 16);
  const note = s.problems.map((p) => `${p.path}: ${p.message} (${p.code})`).join('; ');
  return {
    apiVersion: 'events.k8s.io/v1',
    kind: 'Event',
    metadata: { name: `${s.name.slice(0, 200)}.dyad-${digest}`, namespace: s.namespace },
    eventTime: microTime(now),
    reportingController: REPORTING_CONTROLLER,
    reportingInstance: instance,
    action: 'Compile',
    reason: EVENT_REASON,
    type: 'Warning',
    note: note.length > NOTE_MAX ? `${note.slice(0, NOTE_MAX - 1)}…` : note,
    regarding: {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      namespace: s.namespace,
      name: s.name,
      uid: s.uid,
      resourceVersion: s.resourceVersion,
    },
  };
}

/**
 * An Event's eventTime is a MicroTime, which the API parses only with six fractional digits. The
 * client's type says Date but would send it with milliseconds (refused: "cannot parse .957Z as
 * .000000"); its serializer passes a string through unchanged, so the string goes as it is.
 */
function microTime(d: Date): Date {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z') as unknown as Date;
}

/** Where Events go: the apiserver in production, anything in a unit test. */
export interface EventSink {
  /** Resolves false when an Event of that name exists already. */
  create(event: EventsV1Event): Promise<boolean>;
}

export interface PolicyEventsOptions {
  readonly bus: Bus;
  readonly sink: EventSink;
  readonly logger: Logger;
  /** This process, as the Event's reportingInstance (the pod name in a cluster). */
  readonly instance: string;
}

/** Follows the policy statuses on NATS (last value of each, then changes) and reports problems. */
export class PolicyEventReporter {
  readonly #o: PolicyEventsOptions;
  #consumer: BusConsumer | undefined;

  constructor(o: PolicyEventsOptions) {
    this.#o = o;
  }

  async start(): Promise<void> {
    this.#consumer = await this.#o.bus.consume(
      [PolicyStatusEvent],
      {
        stream: POLICY_STREAM,
        filterSubjects: [PolicyFilter.statuses],
        deliverPolicy: 'last_per_subject',
      },
      async (d) => {
        if (d.value.op === 'upsert') await this.#report(d.value);
      },
    );
  }

  async stop(): Promise<void> {
    await this.#consumer?.stop();
    this.#consumer = undefined;
  }

  async #report(s: Status): Promise<void> {
    const event = problemEvent(s, this.#o.instance, new Date());
    if (event === undefined) return;
    // The apiserver may be away for a while; the status stays the last value on NATS, so a
    // give-up here is caught up by the replay after the next restart.
    for (let attempt = 1; attempt <= 5; attempt++) {
      try {
        const created = await this.#o.sink.create(event);
        this.#o.logger.info(
          { policy: `${s.namespace}/${s.name}`, event: event.metadata?.name, created },
          'policy problems reported as an Event',
        );
        return;
      } catch (err) {
        this.#o.logger.warn(
          { err, policy: `${s.namespace}/${s.name}`, attempt },
          'Event not created',
        );
        await sleep(backoffDelay(attempt, { initialMs: 500, maxMs: 10_000 }));
      }
    }
  }
}

/** The apiserver as an EventSink: AlreadyExists (409) means reported before. */
export function apiEventSink(kc: KubeConfig): EventSink {
  const api = kc.makeApiClient(EventsV1Api);
  return {
    create: async (event) => {
      try {
        await api.createNamespacedEvent({
          namespace: event.metadata?.namespace ?? '',
          body: event,
        });
        return true;
      } catch (err) {
        if (err instanceof ApiException && err.code === 409) return false;
        throw err;
      }
    },
  };
}
