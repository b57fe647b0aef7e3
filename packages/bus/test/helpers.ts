import { DeadLetterHeader, defineMessage, deadLetterSubject } from '@dyad/contracts';
import type { PodObject } from '@dyad/contracts';
import { createLogger, createMetrics } from '@dyad/telemetry';
import type { Registry } from '@dyad/telemetry';
import { connect } from '@nats-io/transport-node';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { vi } from 'vitest';
import { z } from 'zod';
import { connectBus } from '../src/index.ts';
import type { Bus, BusLogger, BusOptions } from '../src/index.ts';

/** Test-only contracts: request/reply has no production contract yet. */
export const AddRequest = defineMessage({
  type: 'io.dyad.test.add.v1',
  version: 1,
  schema: z.object({ a: z.number().int(), b: z.number().int() }),
  description: 'test: add two integers',
  subjectPattern: 'dyad.test.v1.add',
});
export const AddReply = defineMessage({
  type: 'io.dyad.test.sum.v1',
  version: 1,
  schema: z.object({ sum: z.number().int() }),
  description: 'test: the sum',
  subjectPattern: '(reply)',
});
export const Note = defineMessage({
  type: 'io.dyad.test.note.v1',
  version: 1,
  schema: z.object({ n: z.number().int(), text: z.string().default('') }),
  description: 'test: a numbered note',
  subjectPattern: 'dyad.test.v1.note.{n}',
});

export function pod(name: string, rv = '1'): { op: 'upsert'; object: PodObject } {
  return {
    op: 'upsert',
    object: {
      metadata: { uid: `uid-${name}`, name, namespace: 'default', resourceVersion: rv, labels: {} },
      spec: { hostNetwork: false, containers: [] },
      status: { podIPs: ['198.18.0.10', 'fd00::10'], hostIPs: [] },
    },
  };
}

export interface LogLine {
  level: string;
  msg: string;
  fields: Record<string, unknown>;
}

/** A logger that records lines for assertions (and prints nothing). */
export function recordingLogger(): BusLogger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at =
    (level: string) =>
    (obj: object, msg?: string): void => {
      lines.push({ level, msg: msg ?? '', fields: obj as Record<string, unknown> });
    };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

export interface TestBus {
  bus: Bus;
  registry: Registry;
  logger: ReturnType<typeof recordingLogger>;
}

export async function testBus(
  url: string,
  name: string,
  extra: Partial<BusOptions> = {},
): Promise<TestBus> {
  const registry = createMetrics({ processMetrics: false });
  const logger = recordingLogger();
  const bus = await connectBus({
    servers: url,
    name,
    logger,
    registry,
    reconnect: { timeWaitMs: 200, jitterMs: 100 },
    ...extra,
  });
  return { bus, registry, logger };
}

export function silentLogger(service: string): BusLogger {
  return createLogger({ service, level: 'silent' });
}

export async function rawConnection(url: string): Promise<NatsConnection> {
  return connect({ servers: url, name: 'test-raw' });
}

/** Collects everything arriving on a service's dead-letter subject. */
export function collectDeadLetters(nc: NatsConnection, service: string): Msg[] {
  const got: Msg[] = [];
  const sub = nc.subscribe(deadLetterSubject(service));
  void (async () => {
    for await (const m of sub) got.push(m);
  })();
  return got;
}

export async function counterValue(
  registry: Registry,
  name: string,
  labels: Record<string, string>,
): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) return 0;
  const data = await metric.get();
  const hit = data.values.find((v) =>
    Object.entries(labels).every(([k, want]) => v.labels[k] === want),
  );
  return hit?.value ?? 0;
}

/** Waits for a condition; the wait limit is only a hang guard, not a speed assertion. */
export async function eventually<T>(
  fn: () => T | Promise<T>,
  timeoutMs = 20_000,
): Promise<Exclude<T, undefined | false>> {
  return vi.waitFor(
    async () => {
      const v = await fn();
      if (v === undefined || v === false) throw new Error('not yet');
      return v as Exclude<T, undefined | false>;
    },
    { timeout: timeoutMs, interval: 25 },
  );
}

export function reasonOf(m: Msg): string | undefined {
  return m.headers?.get(DeadLetterHeader.reason);
}

export function uniq(prefix: string): string {
  return `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * A suite's set-up, remembering how to undo each step; `run` undoes them last first. A set-up
 * that failed half way undoes just the half it did.
 */
export class Teardown {
  readonly #undo: Array<() => Promise<unknown>> = [];

  async add<T>(make: T | Promise<T>, undo: (made: T) => Promise<unknown>): Promise<T> {
    const made = await make;
    this.#undo.push(() => undo(made));
    return made;
  }

  async run(): Promise<void> {
    for (const undo of this.#undo.splice(0).reverse()) await undo();
  }
}
