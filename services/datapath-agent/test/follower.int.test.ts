// The follower against a real nats-server when the bus loses the router's stream (NATS lost its
// data; the bootstrap service makes it again, empty): the node keeps its last state instead of
// reading "no entries", applies what the router republishes, and is told to read the state whole
// again once the router's sync record for the node is back.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  ALL_STREAMS,
  ROUTER_STREAM,
  RouterIpcacheEvent,
  RouterStream,
  RouterSyncEvent,
  routerIpcacheSubject,
  routerSyncSubject,
} from '@dyad/contracts';
import { connectBus } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import type { DatapathReconciler } from '../src/datapath/reconciler.ts';
import { DesiredStateFollower } from '../src/follower.ts';
import type { NodeRoutes } from '../src/node-routes.ts';

const NODE = 'n1';

describe('the follower when the bus lost the router stream', () => {
  let nats: NatsServer;
  let bus: Bus;
  let revision = 0;

  beforeAll(async () => {
    nats = await startNats();
    bus = await connectBus({
      servers: nats.url,
      name: 'follower-test',
      logger: createLogger({ service: 'follower-test', level: 'silent' }),
      registry: createMetrics(),
    });
    await bus.ensureStreams(ALL_STREAMS);
  });
  afterAll(async () => {
    await bus.close();
    await nats.stop();
  });

  async function entry(prefix: string, host: string): Promise<void> {
    await bus.jsPublish(RouterIpcacheEvent, routerIpcacheSubject(NODE, prefix), {
      op: 'upsert',
      node: NODE,
      revision: ++revision,
      entry: { prefix, identity: 100, kind: 'pod', hostNode: host, local: host === NODE },
    });
  }

  async function sync(entries: number): Promise<void> {
    await bus.jsPublish(RouterSyncEvent, routerSyncSubject(NODE), {
      op: 'upsert',
      node: NODE,
      revision,
      ipcacheEntries: entries,
      routes: 0,
      at: new Date().toISOString(),
    });
  }

  it('keeps the last state, follows the republish, and asks for a full read on the sync record', async () => {
    const replaced: number[] = [];
    const routes = {
      replace: (r: readonly unknown[]) => replaced.push(r.length),
      set: () => undefined,
      delete: () => undefined,
    } as unknown as NodeRoutes;
    const reconciler = {
      markAll: () => undefined,
      flush: () => Promise.resolve(),
      markPrefix: () => undefined,
      markPod: () => undefined,
      markServices: () => undefined,
    } as unknown as DatapathReconciler;
    let restored = 0;
    const follower = new DesiredStateFollower({
      node: NODE,
      reconciler,
      routes,
      onBlocks: () => undefined,
      onRouterRestored: () => restored++,
      logger: createLogger({ service: 'follower-test', level: 'silent' }),
    });

    // a first start on an empty stream: nothing yet, and that is the state
    await follower.start(bus);
    expect(follower.router().entries.size).toBe(0);
    await follower.stop();

    await entry('198.18.0.2/32', NODE);
    await entry('198.18.1.2/32', 'n2');
    await sync(2);
    await follower.start(bus);
    expect([...follower.router().entries.keys()].sort()).toEqual([
      '198.18.0.2/32',
      '198.18.1.2/32',
    ]);
    await follower.stop();

    // NATS loses everything; the stream comes back empty
    const raw = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(raw);
    await jsm.streams.delete(ROUTER_STREAM);
    await raw.close();
    await bus.ensureStreams([RouterStream]);
    const replacedBefore = replaced.length;

    await follower.start(bus);
    // not "no entries": the node forwards with what it had
    expect(follower.router().entries.size).toBe(2);
    expect(replaced.length).toBe(replacedBefore);
    expect(restored).toBe(0);

    // the router republishes: entries are applied as they come, then the sync record
    await entry('198.18.2.2/32', 'n3');
    await vi.waitFor(() => expect(follower.router().entries.has('198.18.2.2/32')).toBe(true));
    expect(restored).toBe(0);
    await entry('198.18.0.2/32', NODE);
    await sync(2);
    await vi.waitFor(() => expect(restored).toBe(1));

    // the full read the agent then does: the republished state replaces the kept one
    await follower.stop();
    await follower.start(bus);
    expect([...follower.router().entries.keys()].sort()).toEqual([
      '198.18.0.2/32',
      '198.18.2.2/32',
    ]);
    expect(replaced.length).toBe(replacedBefore + 1);
    await follower.stop();
  });
});
