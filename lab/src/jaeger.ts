// Jaeger for `lab up --tracing`: its configuration (pure) and a reader of its query API.
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface JaegerPorts {
  /** OTLP over HTTP (`/v1/traces`). */
  readonly otlpHttp: number;
  /** Query API and UI. */
  readonly queryHttp: number;
  readonly queryGrpc: number;
}

/**
 * Jaeger v2 (an OpenTelemetry collector distribution) as the lab needs it: OTLP/HTTP in, traces
 * kept in memory, the query API and UI; everything on 127.0.0.1 at ports free on this machine
 * (several labs and tests share it), and no listener of its own telemetry on a fixed port.
 */
export function jaegerConfig(ports: JaegerPorts): string {
  return `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      lab_memory:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: lab_memory
    http:
      endpoint: 127.0.0.1:${ports.queryHttp}
    grpc:
      endpoint: 127.0.0.1:${ports.queryGrpc}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:${ports.otlpHttp}
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: lab_memory
`;
}

/** A TCP port nobody listens on right now, on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** One span as Jaeger's query API (`/api/traces/<id>`) gives it, with its service resolved. */
export interface JaegerSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly name: string;
  readonly service: string;
  /** The resource attributes of the process that made it (e.g. `k8s.node.name`). */
  readonly process: Readonly<Record<string, unknown>>;
  /** Microseconds since the epoch. */
  readonly startTime: number;
  readonly parentSpanId: string | undefined;
  readonly links: readonly string[];
  readonly tags: Readonly<Record<string, unknown>>;
}

interface ApiTrace {
  traceID: string;
  spans: Array<{
    traceID: string;
    spanID: string;
    operationName: string;
    startTime: number;
    processID: string;
    references?: Array<{ refType: string; traceID: string; spanID: string }>;
    tags?: Array<{ key: string; value: unknown }>;
  }>;
  processes: Record<string, { serviceName: string; tags?: Array<{ key: string; value: unknown }> }>;
}

/** The spans of one trace, oldest first; empty while Jaeger does not know the trace. */
export async function fetchTrace(queryUrl: string, traceId: string): Promise<JaegerSpan[]> {
  const res = await fetch(`${queryUrl}/api/traces/${traceId}`);
  if (res.status === 404) return [];
  if (!res.ok) throw new Error(`Jaeger query ${res.status}: ${await res.text()}`);
  const body = (await res.json()) as { data?: ApiTrace[] };
  const spans: JaegerSpan[] = [];
  for (const t of body.data ?? []) {
    for (const s of t.spans) {
      const parent = s.references?.find((r) => r.refType === 'CHILD_OF');
      spans.push({
        traceId: s.traceID,
        spanId: s.spanID,
        name: s.operationName,
        service: t.processes[s.processID]?.serviceName ?? '',
        process: Object.fromEntries(
          (t.processes[s.processID]?.tags ?? []).map((tag) => [tag.key, tag.value]),
        ),
        startTime: s.startTime,
        parentSpanId: parent?.spanID,
        links: (s.references ?? [])
          .filter((r) => r.refType === 'FOLLOWS_FROM')
          .map((r) => r.spanID),
        tags: Object.fromEntries((s.tags ?? []).map((tag) => [tag.key, tag.value])),
      });
    }
  }
  return spans.sort((a, b) => a.startTime - b.startTime);
}

/** Trace ids Jaeger holds for a service's operation whose tags match, newest first. */
export async function findTraces(
  queryUrl: string,
  service: string,
  operation: string,
  tags: Readonly<Record<string, string>>,
  limit = 20,
): Promise<string[]> {
  const q = new URLSearchParams({
    service,
    operation,
    tags: JSON.stringify(tags),
    limit: String(limit),
    lookback: '1h',
  });
  const res = await fetch(`${queryUrl}/api/traces?${q.toString()}`);
  if (!res.ok) throw new Error(`Jaeger query ${res.status}: ${await res.text()}`);
  const body = (await res.json()) as { data?: ApiTrace[] };
  return (body.data ?? []).map((t) => t.traceID);
}
