// A last-value subject keeps one message: whatever arrives after a valid endpoint report on its
// subject, if it is garbage (bytes, a mutated payload, a record claiming foreign addresses), the
// router dead-letters it and keeps the valid state it had. Random inputs by fast-check.
import {
  ALL_STREAMS,
  CONTRACTS_BY_TYPE,
  DeadLetterHeader,
  EndpointReport,
  IpamNodeEvent,
  NodeEvent,
  ROUTER_STREAM,
  RouterIpcacheEvent,
  RouterRouteEvent,
  RouterServiceEvent,
  RouterSyncEvent,
  agentEndpointSubject,
  deadLetterSubject,
  decodeEvent,
  encodeEvent,
  ipamNodeSubject,
  k8sObjectSubject,
  routerNodeFilter,
} from '@dyad/contracts';
import type { EndpointStateValue } from '@dyad/contracts';
import type { Bus } from '@dyad/bus';
import { connectBus } from '@dyad/bus';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { jetstream } from '@nats-io/jetstream';
import { connect, headers as natsHeaders } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createRouterMetrics } from '../src/metrics.ts';
import { endpointProblem } from '../src/ownership.ts';
import { RouterService } from '../src/service.ts';
import { storedFromMessages } from '../src/sink.ts';
import { busRouterPort } from '../src/stream-port.ts';

const OUTPUT = [RouterIpcacheEvent, RouterRouteEvent, RouterSyncEvent, RouterServiceEvent];
const BLOCKS = ['198.18.1.0/24', 'fd00:18:1::/112'];
const enc = new TextEncoder();

const WEB: EndpointStateValue = {
  node: 'a',
  containerId: 'ctr-web',
  ifName: 'eth0',
  endpointId: 1,
  network: 'dyad',
  pod: { namespace: 'lab', name: 'web' },
  ipv4: '198.18.1.10',
  ipv6: 'fd00:18:1::a',
  mac: '0a:00:00:00:00:01',
  hostIfName: 'dyhweb',
  hostIfindex: 5,
  hostMac: '0e:00:00:00:00:01',
  identity: 0,
  policy: { ingress: 'disabled', egress: 'disabled' },
  createdAt: '2025-01-01T00:00:00.000Z',
};
const SUBJECT = agentEndpointSubject('a', WEB.containerId, WEB.ifName);

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** The report with one random field replaced by a random JSON value (or removed). */
function mutated(path: readonly number[], replacement: Json, remove: boolean): Json {
  const root = JSON.parse(JSON.stringify({ op: 'upsert', endpoint: WEB })) as Json;
  let at: Json = root;
  for (let i = 0; i < path.length; i++) {
    if (at === null || typeof at !== 'object' || Array.isArray(at)) break;
    const keys = Object.keys(at);
    const key = keys[(path[i] ?? 0) % keys.length] as string;
    const last = i === path.length - 1 || at[key] === null || typeof at[key] !== 'object';
    if (last) {
      if (remove) Reflect.deleteProperty(at, key);
      else at[key] = replacement;
      break;
    }
    at = at[key] as Json;
  }
  return root;
}

/** Whether the router would apply this body with these headers (then it is not garbage). */
function applicable(headers: Record<string, string>, body: Uint8Array): boolean {
  const d = decodeEvent([EndpointReport], headers, body, CONTRACTS_BY_TYPE);
  return d.ok && endpointProblem(SUBJECT, d.value.endpoint, BLOCKS, d.value.op) === undefined;
}

describe('garbage after valid state on a last-value subject (fast-check, real NATS)', () => {
  const teardown: (() => unknown)[] = [];
  let nats: NatsServer;
  let inputs: Bus;
  let routerBus: Bus;
  let router: RouterService;
  let nc: NatsConnection;
  let deadLetters = 0;

  const webEntry = async () => {
    const snap = await inputs.snapshot(OUTPUT, {
      stream: ROUTER_STREAM,
      filterSubjects: [routerNodeFilter('a')],
    });
    return storedFromMessages([...snap.values()].map((d) => d.value))
      .get('a')
      ?.ipcache.get('198.18.1.10/32');
  };

  beforeAll(async () => {
    nats = await startNats();
    teardown.push(() => nats.stop());
    const bus = (name: string) =>
      connectBus({
        servers: nats.url,
        name,
        logger: createLogger({ service: name, level: 'silent' }),
        registry: createMetrics(),
      });
    inputs = await bus('garbage-inputs');
    teardown.push(() => inputs.close());
    await inputs.ensureStreams(ALL_STREAMS);
    await inputs.jsPublish(NodeEvent, k8sObjectSubject('Node', undefined, 'a'), {
      op: 'upsert',
      object: {
        metadata: { uid: 'uid-a', name: 'a', resourceVersion: '1', labels: {} },
        spec: { podCIDRs: [], unschedulable: false },
        status: {
          addresses: [
            { type: 'InternalIP', address: '198.19.0.1' },
            { type: 'InternalIP', address: 'fd00:19::1' },
          ],
          ready: true,
        },
      },
    });
    await inputs.jsPublish(IpamNodeEvent, ipamNodeSubject('a'), {
      op: 'upsert',
      node: 'a',
      blocks: [
        { family: 'IPv4', cidr: BLOCKS[0] as string, gateway: '198.18.1.1' },
        { family: 'IPv6', cidr: BLOCKS[1] as string, gateway: 'fd00:18:1::1' },
      ],
    });
    await inputs.jsPublish(EndpointReport, SUBJECT, { op: 'upsert', endpoint: WEB });
    routerBus = await bus('router');
    teardown.push(() => routerBus.close());
    router = new RouterService({
      bus: routerBus,
      port: busRouterPort(routerBus),
      logger: createLogger({ service: 'router-test', level: 'silent' }),
      metrics: createRouterMetrics(createMetrics()),
      tombstoneTtl: '1h',
      flushDelayMs: 5,
      resyncIntervalMs: 3_600_000,
      publishConcurrency: 64,
    });
    await router.start();
    teardown.push(() => router.stop());
    await vi.waitFor(async () => expect((await webEntry())?.pod?.name).toBe('web'), {
      timeout: 30_000,
    });
    nc = await connect({ servers: nats.url });
    teardown.push(() => nc.close());
    const sub = nc.subscribe(deadLetterSubject('router'));
    void (async () => {
      for await (const m of sub)
        if (m.headers?.get(DeadLetterHeader.subject) === SUBJECT) deadLetters++;
    })();
    await nc.flush();
  });

  afterAll(async () => {
    for (const undo of teardown.reverse()) await undo();
  });

  it("each garbage message is dead-lettered and web's entry stays as it was", async () => {
    const valid = encodeEvent(
      EndpointReport,
      { op: 'upsert', endpoint: WEB },
      { source: '/dyad/fuzz' },
    );
    const js = jetstream(nc);
    const garbage = fc.oneof(
      // Bytes, with the valid headers or none.
      fc
        .record({ body: fc.uint8Array({ maxLength: 200 }), keepHeaders: fc.boolean() })
        .map(({ body, keepHeaders }) => ({ headers: keepHeaders ? valid.headers : {}, body })),
      // The valid report with one field changed.
      fc
        .record({
          path: fc.array(fc.nat(), { minLength: 1, maxLength: 3 }),
          replacement: fc.jsonValue() as fc.Arbitrary<Json>,
          remove: fc.boolean(),
        })
        .map(({ path, replacement, remove }) => ({
          headers: valid.headers,
          body: enc.encode(JSON.stringify(mutated(path, replacement, remove))),
        })),
      // A well-formed report claiming an address outside node a's blocks.
      fc.ipV4().map((ipv4) => ({
        headers: valid.headers,
        body: enc.encode(JSON.stringify({ op: 'upsert', endpoint: { ...WEB, ipv4 } })),
      })),
    );
    let sent = 0;
    await fc.assert(
      fc.asyncProperty(garbage, async ({ headers, body }) => {
        fc.pre(!applicable(headers, body));
        const h = natsHeaders();
        for (const [k, v] of Object.entries(headers)) h.set(k, v);
        await js.publish(SUBJECT, body, { headers: h });
        sent++;
        await vi.waitFor(() => expect(deadLetters).toBe(sent), { timeout: 20_000 });
        await router.idle();
        const entry = await webEntry();
        expect(entry).toMatchObject({ kind: 'pod', hostNode: 'a', pod: { name: 'web' } });
      }),
      { numRuns: 40 },
    );
    expect(sent).toBeGreaterThan(0);
  });
});
