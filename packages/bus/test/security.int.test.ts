import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AGENT_SERVICE,
  ALL_KV_BUCKETS,
  ALL_STREAMS,
  EndpointReport,
  FLOW_STREAM,
  FlowEvent,
  K8S_STREAM,
  IpamNodeEvent,
  NodeEvent,
  PodEvent,
  PodIdentityEvent,
  ROUTER_STREAM,
  RouterSyncEvent,
  ServiceIdentity,
  UninstallReply,
  UninstallRequest,
  agentEndpointSubject,
  agentIdentity,
  clusterIdentities,
  inboxPermission,
  ipamNodeSubject,
  k8sObjectSubject,
  policyPodSubject,
  routerNodeFilter,
  routerSyncSubject,
  uninstallSubject,
} from '@dyad/contracts';
import type { PayloadOf } from '@dyad/contracts';
import { createNatsSecurity, startNats } from '@dyad/testbed';
import type { NatsSecurity, NatsServer } from '@dyad/testbed';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, nkeyAuthenticator } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectError, PublishError, seedFromCreds } from '../src/index.ts';
import { Teardown, counterValue, eventually, pod, testBus } from './helpers.ts';
import type { TestBus } from './helpers.ts';

type Endpoint = PayloadOf<typeof EndpointReport>['endpoint'];

function endpoint(node: string, containerId: string, ipv4: string): Endpoint {
  return {
    node,
    containerId,
    ifName: 'eth0',
    endpointId: 1,
    network: 'dyad',
    pod: { namespace: 'lab', name: containerId },
    ipv4,
    mac: '0a:00:00:00:00:01',
    hostIfName: `dyh${containerId}`,
    hostIfindex: 5,
    hostMac: '0e:00:00:00:00:01',
    identity: 0,
    policy: { ingress: 'disabled', egress: 'disabled' },
    createdAt: '2025-01-01T00:00:00.000Z',
  };
}

const refusals = (t: TestBus, subject: string) =>
  t.logger.lines.filter(
    (l) => l.msg === 'NATS refused: permission violation' && l.fields.subject === subject,
  );

describe('NATS identities: NKeys over TLS, least privilege enforced by nats-server', () => {
  const teardown = new Teardown();
  let dir: string;
  let security: NatsSecurity;
  let nats: NatsServer;
  let bootstrap: TestBus;
  const as = async (identity: string, service: string = identity): Promise<TestBus> =>
    teardown.add(
      testBus(nats.url, service, {
        credsFile: security.creds.get(identity) as string,
        caFile: security.tls.caFile,
        connectTimeoutMs: 10_000,
      }),
      (t) => t.bus.close(),
    );

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dyad-sec-'));
    security = await createNatsSecurity(dir, {
      identities: clusterIdentities(['node-a', 'node-b']),
      inbox: inboxPermission,
    });
    nats = await teardown.add(startNats({ security }), (n) => n.stop());
    bootstrap = await as(ServiceIdentity.bootstrap);
    await bootstrap.bus.ensureStreams(ALL_STREAMS);
    await bootstrap.bus.ensureKv(ALL_KV_BUCKETS);
  });

  afterAll(async () => {
    await teardown.run();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes one creds file per identity, readable by its owner only', () => {
    for (const name of ['agent-node-a', 'agent-node-b', 'observer', 'bootstrap', 'ipam']) {
      const path = security.creds.get(name);
      expect(path).toBe(join(dir, 'creds', `${name}.creds`));
      expect(statSync(path as string).mode & 0o777).toBe(0o600);
    }
  });

  it('refuses a client without credentials, and a client that does not trust the CA gets no connection', async () => {
    await expect(
      testBus(nats.url, 'anonymous', { caFile: security.tls.caFile, connectTimeoutMs: 5_000 }),
    ).rejects.toThrow(ConnectError);
    await expect(
      testBus(nats.url, 'untrusting', {
        credsFile: security.creds.get('observer') as string,
        connectTimeoutMs: 5_000,
      }),
    ).rejects.toThrow(ConnectError);
  });

  it("node A's agent writes its own endpoint record", async () => {
    const a = await as(agentIdentity('node-a'), AGENT_SERVICE);
    const ep = endpoint('node-a', 'ctr-a', '198.18.1.10');
    const ack = await a.bus.jsPublish(
      EndpointReport,
      agentEndpointSubject('node-a', 'ctr-a', 'eth0'),
      { op: 'upsert', endpoint: ep },
    );
    expect(ack.seq).toBeGreaterThan(0);
    expect(await bootstrapRead(agentEndpointSubject('node-a', 'ctr-a', 'eth0'))).toBe(true);
    expect(a.logger.lines.filter((l) => l.level === 'error')).toEqual([]);
  });

  it("node A's agent cannot publish node B's endpoint record: the server refuses, the bus logs and counts it", async () => {
    const a = await as(agentIdentity('node-a'), AGENT_SERVICE);
    const subject = agentEndpointSubject('node-b', 'ctr-forged', 'eth0');
    await expect(
      a.bus.jsPublish(
        EndpointReport,
        subject,
        { op: 'upsert', endpoint: endpoint('node-b', 'ctr-forged', '198.18.2.10') },
        { timeoutMs: 5_000 },
      ),
    ).rejects.toThrow(PublishError);
    await eventually(() => refusals(a, subject).length > 0);
    expect(refusals(a, subject)[0]?.fields.operation).toBe('publish');
    expect(
      await counterValue(a.registry, 'dyad_bus_permission_violations_total', {
        operation: 'publish',
      }),
    ).toBeGreaterThan(0);
    // Nothing reached the stream under node B's name.
    const stored = await bootstrapRead(subject);
    expect(stored).toBe(false);
  });

  it("node A's agent cannot write node blocks, not even its own node's", async () => {
    const a = await as(agentIdentity('node-a'), AGENT_SERVICE);
    const subject = ipamNodeSubject('node-a');
    await expect(
      a.bus.jsPublish(
        IpamNodeEvent,
        subject,
        {
          op: 'upsert',
          node: 'node-a',
          blocks: [{ family: 'IPv4', cidr: '198.18.0.0/16', gateway: '198.18.0.1' }],
        },
        { timeoutMs: 5_000 },
      ),
    ).rejects.toThrow(PublishError);
    await eventually(() => refusals(a, subject).length > 0);
    // ipam may.
    const ipam = await as(ServiceIdentity.ipam);
    const ack = await ipam.bus.jsPublish(IpamNodeEvent, subject, {
      op: 'upsert',
      node: 'node-a',
      blocks: [{ family: 'IPv4', cidr: '198.18.1.0/24', gateway: '198.18.1.1' }],
    });
    expect(ack.seq).toBeGreaterThan(0);
  });

  it("node A's agent cannot read node B's subjects: neither a subscription nor a JetStream consumer", async () => {
    const router = await as(ServiceIdentity.router);
    for (const node of ['node-a', 'node-b']) {
      await router.bus.jsPublish(RouterSyncEvent, routerSyncSubject(node), {
        op: 'upsert',
        node,
        revision: 1,
        ipcacheEntries: 0,
        routes: 0,
        at: '2025-01-01T00:00:00.000Z',
      });
    }
    const a = await as(agentIdentity('node-a'), AGENT_SERVICE);
    // Its own node's state: readable.
    const own = await a.bus.snapshot([RouterSyncEvent], {
      stream: ROUTER_STREAM,
      filterSubjects: [routerNodeFilter('node-a')],
    });
    expect([...own.keys()]).toEqual([routerSyncSubject('node-a')]);
    // Node B's: the consumer is refused.
    await expect(
      a.bus.snapshot([RouterSyncEvent], {
        stream: ROUTER_STREAM,
        filterSubjects: [routerNodeFilter('node-b')],
      }),
    ).rejects.toThrow();
    // The whole stream (no filter): refused too.
    await expect(a.bus.snapshot([RouterSyncEvent], { stream: ROUTER_STREAM })).rejects.toThrow();
    // A plain subscription to node B's subjects is refused by the server and logged.
    const filter = routerNodeFilter('node-b');
    a.bus.subscribe([RouterSyncEvent], filter, () => undefined);
    await eventually(() => refusals(a, filter).length > 0);
    expect(refusals(a, filter)[0]?.fields.operation).toBe('subscription');
    // Nor anyone's inbox but its own.
    a.bus.subscribe([RouterSyncEvent], '_INBOX.>', () => undefined);
    await eventually(() => refusals(a, '_INBOX.>').length > 0);
  });

  it("an agent reads a pod's record (its CNI call joins the pod's trace) but no other kind", async () => {
    const bridge = await as(ServiceIdentity.kubeBridge);
    const podSubject = k8sObjectSubject('Pod', 'default', 'traced');
    await bridge.bus.jsPublish(PodEvent, podSubject, pod('traced'));
    const nodeSubject = k8sObjectSubject('Node', undefined, 'node-b');
    await bridge.bus.jsPublish(NodeEvent, nodeSubject, {
      op: 'upsert',
      object: {
        metadata: { uid: 'u-b', name: 'node-b', resourceVersion: '1', labels: {} },
        spec: { podCIDRs: [], unschedulable: false },
        status: { addresses: [], ready: true },
      },
    });
    const a = await as(agentIdentity('node-a'), AGENT_SERVICE);
    const found = await a.bus.snapshot([PodEvent], {
      stream: K8S_STREAM,
      filterSubjects: [podSubject],
    });
    expect(found.get(podSubject)?.value.object.metadata.uid).toBe('uid-traced');
    await expect(
      a.bus.snapshot([NodeEvent], { stream: K8S_STREAM, filterSubjects: [nodeSubject] }),
    ).rejects.toThrow();
  });

  it('an agent cannot delete or purge a stream; only bootstrap administers them', async () => {
    const nc = await rawAs(agentIdentity('node-a'));
    try {
      const jsm = await jetstreamManager(nc);
      // What it may do works on this connection (so the refusals below are the server's).
      expect((await jsm.streams.info(ROUTER_STREAM)).config.name).toBe(ROUTER_STREAM);
      await expect(jsm.streams.delete(ROUTER_STREAM)).rejects.toThrow();
      await expect(jsm.streams.purge(ROUTER_STREAM)).rejects.toThrow();
      await expect(jsm.streams.add({ name: 'EVIL', subjects: ['evil.>'] })).rejects.toThrow();
    } finally {
      await nc.close();
    }
    const info = await (await bootstrapJsm()).streams.info(ROUTER_STREAM);
    expect(info.state.messages).toBeGreaterThan(0);
  });

  it('each kind of desired state has one writer', async () => {
    const bridge = await as(ServiceIdentity.kubeBridge);
    const policy = await as(ServiceIdentity.policy);
    const router = await as(ServiceIdentity.router);
    const nodeSubject = k8sObjectSubject('Node', undefined, 'node-a');
    const node = {
      op: 'upsert' as const,
      object: {
        metadata: { uid: 'u', name: 'node-a', resourceVersion: '1', labels: {} },
        spec: { podCIDRs: [], unschedulable: false },
        status: { addresses: [], ready: true },
      },
    };
    expect((await bridge.bus.jsPublish(NodeEvent, nodeSubject, node)).seq).toBeGreaterThan(0);
    await expect(
      router.bus.jsPublish(NodeEvent, nodeSubject, node, { timeoutMs: 5_000 }),
    ).rejects.toThrow(PublishError);
    const podSubject = policyPodSubject('lab', 'web');
    const identity = {
      op: 'upsert' as const,
      namespace: 'lab',
      name: 'web',
      uid: 'uid-web',
      identity: 0x10001,
    };
    expect(
      (await policy.bus.jsPublish(PodIdentityEvent, podSubject, identity)).seq,
    ).toBeGreaterThan(0);
    await expect(
      bridge.bus.jsPublish(PodIdentityEvent, podSubject, identity, { timeoutMs: 5_000 }),
    ).rejects.toThrow(PublishError);
  });

  it('the observer subscribes to public events and nothing else, and publishes nothing', async () => {
    const observer = await as(ServiceIdentity.observer);
    const flows = 'dyad.flow.v1.>';
    observer.bus.subscribe([FlowEvent], flows, () => undefined);
    const k8s = 'dyad.k8s.v1.>';
    observer.bus.subscribe([NodeEvent], k8s, () => undefined);
    await eventually(() => refusals(observer, k8s).length > 0);
    const subject = ipamNodeSubject('node-b');
    observer.bus.publish(IpamNodeEvent, subject, { op: 'delete', node: 'node-b', blocks: [] });
    await eventually(() => refusals(observer, subject).length > 0);
    // The server answers in order: the flow subscription, made first, was accepted.
    expect(refusals(observer, flows)).toEqual([]);
    // It reads the flow stream, as `dyad observe` does (several filters), and no other stream.
    const reader = await observer.bus.consume(
      [FlowEvent],
      { stream: FLOW_STREAM, filterSubjects: ['dyad.flow.v1.node-a.>', 'dyad.flow.v1.node-b.>'] },
      () => undefined,
    );
    await reader.stop();
    await expect(
      observer.bus.snapshot([RouterSyncEvent], { stream: ROUTER_STREAM }),
    ).rejects.toThrow();
  });

  it('only the uninstall identity asks an agent to leave its node, and it reads nothing but Node records', async () => {
    const bridge = await as(ServiceIdentity.kubeBridge);
    await bridge.bus.jsPublish(NodeEvent, k8sObjectSubject('Node', undefined, 'node-a'), {
      op: 'upsert',
      object: {
        metadata: { name: 'node-a', uid: 'u-node-a', resourceVersion: '1' },
        spec: {},
        status: { ready: true },
      },
    });
    const agentA = await as(agentIdentity('node-a'), AGENT_SERVICE);
    agentA.bus.serve(
      UninstallRequest,
      uninstallSubject('node-a'),
      (r) => ({ node: r.value.node, removed: ['conflist'], problems: [] }),
      UninstallReply,
    );
    const u = await as(ServiceIdentity.uninstall);
    const nodes = await u.bus.snapshot([NodeEvent], {
      stream: K8S_STREAM,
      filterSubjects: ['dyad.k8s.v1.node.>'],
    });
    expect([...nodes.values()].map((d) => d.value.object.metadata.name)).toContain('node-a');
    await eventually(async () => {
      try {
        const reply = await u.bus.request(
          UninstallRequest,
          uninstallSubject('node-a'),
          { node: 'node-a' },
          UninstallReply,
          { timeoutMs: 2_000 },
        );
        return reply.node === 'node-a';
      } catch {
        return false;
      }
    });
    // no other stream, not even other kinds of Kubernetes records
    await expect(
      u.bus.snapshot([PodEvent], { stream: K8S_STREAM, filterSubjects: ['dyad.k8s.v1.pod.>'] }),
    ).rejects.toThrow();
    // node B's agent cannot listen for node A's request; kube-bridge cannot send one
    const agentB = await as(agentIdentity('node-b'), AGENT_SERVICE);
    agentB.bus.subscribe([UninstallRequest], uninstallSubject('node-a'), () => undefined);
    await eventually(() => refusals(agentB, uninstallSubject('node-a')).length > 0);
    await expect(
      bridge.bus.request(
        UninstallRequest,
        uninstallSubject('node-a'),
        { node: 'node-a' },
        UninstallReply,
        { timeoutMs: 2_000 },
      ),
    ).rejects.toThrow();
    await eventually(() => refusals(bridge, uninstallSubject('node-a')).length > 0);
  });

  function seedOf(identity: string): Uint8Array {
    const path = security.creds.get(identity) as string;
    return new TextEncoder().encode(seedFromCreds(readFileSync(path, 'utf8'), path));
  }

  /** A plain nats.js connection as `identity`, with its own inbox. */
  function rawAs(identity: string) {
    return connect({
      servers: nats.url,
      authenticator: nkeyAuthenticator(seedOf(identity)),
      tls: { caFile: security.tls.caFile },
      inboxPrefix: inboxPrefixOf(identity),
    });
  }

  async function bootstrapJsm() {
    const nc = await teardown.add(rawAs(ServiceIdentity.bootstrap), (c) => c.close());
    return jetstreamManager(nc);
  }

  function inboxPrefixOf(identity: string): string {
    const id = security.identities.find((i) => i.name === identity);
    return (id?.inbox ?? '').replace(/\.>$/, '');
  }

  async function bootstrapRead(subject: string): Promise<boolean> {
    const jsm = await bootstrapJsm();
    return (await jsm.streams.getMessage('DYAD_AGENT', { last_by_subj: subject })) !== null;
  }
});
