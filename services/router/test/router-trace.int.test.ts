// One pod's trace through the router: an endpoint report published in a span is consumed, the
// debounced flush that it causes is a span of the same trace, a child of its input, and the
// ipcache entries it publishes carry that trace on to the agents.
import { ROOT_CONTEXT, trace } from '@opentelemetry/api';
import {
  ALL_STREAMS,
  EndpointReport,
  IpamNodeEvent,
  NodeEvent,
  ROUTER_STREAM,
  RouterIpcacheEvent,
  agentEndpointSubject,
  ipamNodeSubject,
  k8sObjectSubject,
  routerIpcacheSubject,
} from '@dyad/contracts';
import { connectBus } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import { createLogger, createMetrics, startInMemoryTracing } from '@dyad/telemetry';
import type { InMemoryTracing } from '@dyad/telemetry';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRouterMetrics } from '../src/metrics.ts';
import { RouterService } from '../src/service.ts';
import { busRouterPort } from '../src/stream-port.ts';

async function waitFor<T>(
  check: () => T | undefined | Promise<T | undefined>,
  deadlineMs = 30_000,
): Promise<T> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const v = await Promise.resolve()
      .then(check)
      .catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function connect(url: string, name: string): Promise<Bus> {
  const bus = await connectBus({
    servers: url,
    name,
    logger: createLogger({ service: name, level: 'silent' }),
    registry: createMetrics(),
  });
  await bus.ensureStreams(ALL_STREAMS);
  return bus;
}

async function publishNode(bus: Bus, name: string, v4: string, cidr: string): Promise<void> {
  await bus.jsPublish(NodeEvent, k8sObjectSubject('Node', undefined, name), {
    op: 'upsert',
    object: {
      metadata: { uid: `uid-${name}`, name, resourceVersion: '1', labels: {} },
      spec: { podCIDRs: [], unschedulable: false },
      status: { addresses: [{ type: 'InternalIP', address: v4 }], ready: true },
    },
  });
  await bus.jsPublish(IpamNodeEvent, ipamNodeSubject(name), {
    op: 'upsert',
    node: name,
    blocks: [{ family: 'IPv4', cidr, gateway: cidr.replace('0/24', '1') }],
  });
}

describe('router tracing', () => {
  const teardown: (() => unknown)[] = [];
  let tracing: InMemoryTracing;
  let nats: NatsServer;
  let inputs: Bus;
  let routerBus: Bus;
  let router: RouterService;

  beforeAll(async () => {
    tracing = startInMemoryTracing();
    teardown.push(() => tracing.shutdown());
    nats = await startNats();
    teardown.push(() => nats.stop());
    inputs = await connect(nats.url, 'router-trace-inputs');
    teardown.push(() => inputs.close());
    await publishNode(inputs, 'a', '198.19.0.1', '198.18.1.0/24');
    await publishNode(inputs, 'b', '198.19.0.2', '198.18.2.0/24');
    routerBus = await connect(nats.url, 'router');
    teardown.push(() => routerBus.close());
    router = new RouterService({
      bus: routerBus,
      port: busRouterPort(routerBus),
      logger: createLogger({ service: 'router-trace', level: 'silent' }),
      metrics: createRouterMetrics(createMetrics()),
      tombstoneTtl: '1h',
      flushDelayMs: 5,
      resyncIntervalMs: 3_600_000,
      publishConcurrency: 16,
    });
    await router.start();
    teardown.push(() => router.stop());
  });
  afterAll(async () => {
    for (const undo of teardown.reverse()) await undo();
  });

  it('an endpoint report, the flush it causes and the ipcache entry it yields are one trace', async () => {
    // the nodes' own entries are out: the next flush has the report as its only input
    const nodeEntry = routerIpcacheSubject('a', '198.19.0.2/32');
    await waitFor(async () =>
      (await inputs.snapshot([RouterIpcacheEvent], { stream: ROUTER_STREAM })).get(nodeEntry),
    );
    const origin = trace.getTracer('test').startSpan('pod origin');
    const traceId = origin.spanContext().traceId;
    await trace
      .getTracer('test')
      .startActiveSpan('report', {}, trace.setSpan(ROOT_CONTEXT, origin), async (span) => {
        await inputs.jsPublish(EndpointReport, agentEndpointSubject('b', 'ctr-web', 'eth0'), {
          op: 'upsert',
          endpoint: {
            node: 'b',
            containerId: 'ctr-web',
            ifName: 'eth0',
            endpointId: 1,
            network: 'dyad',
            pod: { namespace: 'lab', name: 'web' },
            ipv4: '198.18.2.10',
            mac: '0a:00:00:00:00:01',
            hostIfName: 'dyhweb',
            hostIfindex: 5,
            hostMac: '0e:00:00:00:00:01',
            identity: 0,
            policy: { ingress: 'disabled', egress: 'disabled' },
            createdAt: '2025-01-01T00:00:00.000Z',
          },
        });
        span.end();
      });
    origin.end();
    const podEntry = routerIpcacheSubject('a', '198.18.2.10/32');
    const d = await waitFor(async () =>
      (await inputs.snapshot([RouterIpcacheEvent], { stream: ROUTER_STREAM })).get(podEntry),
    );
    expect(d.header('traceparent')?.split('-')[1]).toBe(traceId);
    const flush = await waitFor(() =>
      tracing.spans().find((s) => s.name === 'router flush' && s.spanContext().traceId === traceId),
    );
    const consumed = tracing
      .spans()
      .filter((s) => s.spanContext().traceId === traceId && s.name.startsWith('process '));
    expect(consumed.length).toBeGreaterThan(0);
    expect(consumed.map((s) => s.spanContext().spanId)).toContain(flush.parentSpanContext?.spanId);
  });
});
