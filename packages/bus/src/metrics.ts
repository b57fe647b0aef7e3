import { Counter } from 'prom-client';
import type { Registry } from 'prom-client';

export interface BusMetrics {
  /** Messages refused and sent to the dead-letter subject. */
  readonly deadLetters: Counter<'reason' | 'subject_root'>;
  /** Inbound messages by operation and outcome (ok, handler-error, dead-letter). */
  readonly handled: Counter<'op' | 'outcome' | 'subject_root'>;
  readonly published: Counter<'op' | 'subject_root'>;
  /** Connection status events (disconnect, reconnect, ...). */
  readonly statusEvents: Counter<'type'>;
  /** Operations the server refused this identity (publish or subscription). */
  readonly permissionViolations: Counter<'operation'>;
}

/** Reuses a metric already on the registry, so two buses can share one registry. */
function counter<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: L[],
): Counter<L> {
  const existing = registry.getSingleMetric(name);
  // another kind of metric under this name fails below, as a duplicate registration
  if (existing instanceof Counter) return existing;
  return new Counter({ name, help, labelNames, registers: [registry] });
}

export function busMetrics(registry: Registry): BusMetrics {
  return {
    deadLetters: counter(
      registry,
      'dyad_bus_dead_letters_total',
      'Inbound messages refused and dead-lettered.',
      ['reason', 'subject_root'],
    ),
    handled: counter(
      registry,
      'dyad_bus_messages_handled_total',
      'Inbound messages by operation, outcome and subject family (subjectRoot).',
      ['op', 'outcome', 'subject_root'],
    ),
    published: counter(
      registry,
      'dyad_bus_messages_published_total',
      'Messages published by operation and subject family (subjectRoot).',
      ['op', 'subject_root'],
    ),
    statusEvents: counter(
      registry,
      'dyad_bus_connection_events_total',
      'NATS connection status events.',
      ['type'],
    ),
    permissionViolations: counter(
      registry,
      'dyad_bus_permission_violations_total',
      'Operations nats-server refused this identity: publishes and subscriptions outside its permissions.',
      ['operation'],
    ),
  };
}

/**
 * Keeps the label set small: Dyad subjects are `dyad.<area>.<version>...`, so three tokens name
 * the family without object names; anything else (inboxes, foreign subjects) collapses to its
 * first token.
 */
export function subjectRoot(subject: string): string {
  const tokens = subject.split('.');
  if (tokens[0] === 'dyad') return tokens.slice(0, 3).join('.');
  return tokens[0] ?? '';
}
