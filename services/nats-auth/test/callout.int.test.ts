// The auth callout against a real nats-server and the test bed's real kube-apiserver: projected
// ServiceAccount tokens (TokenRequest bound to a Pod with spec.nodeName) become their Dyad
// identities with exactly the contracts' permissions; anything else is refused by the server.
import { createSign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectBus } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import {
  ALL_STREAMS,
  AgentStream,
  EndpointReport,
  ServiceIdentity,
  agentEndpointSubject,
  agentIdentity,
} from '@dyad/contracts';
import type { PayloadOf } from '@dyad/contracts';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { startKube, startNats } from '@dyad/testbed';
import type { KubeCluster, NatsServer } from '@dyad/testbed';
import { AuthenticationV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SecretKey, ensureCalloutKeys } from '../src/keys.ts';
import { secretStore } from '../src/kube.ts';
import { NODE_NAME_EXTRA } from '../src/identity.ts';
import { startNatsAuth } from '../src/service.ts';
import type { NatsAuth } from '../src/service.ts';

const NS = 'dyad-callout';
const AUDIENCE = 'dyad-nats';
const SECRET = 'dyad-nats-auth';

type Endpoint = PayloadOf<typeof EndpointReport>['endpoint'];
function endpoint(node: string, containerId: string): Endpoint {
  return {
    node,
    containerId,
    ifName: 'eth0',
    endpointId: 1,
    network: 'dyad',
    pod: { namespace: 'lab', name: containerId },
    ipv4: '198.18.0.10',
    mac: '0a:00:00:00:00:01',
    hostIfName: `dyh${containerId}`,
    hostIfindex: 5,
    hostMac: '0e:00:00:00:00:01',
    identity: 0,
    policy: { ingress: 'disabled', egress: 'disabled' },
    createdAt: '2025-01-01T00:00:00.000Z',
  };
}

interface LogLine {
  readonly level: string;
  readonly msg: string;
  readonly fields: Record<string, unknown>;
}
function recordingLogger(): {
  lines: LogLine[];
  debug(o: object, m?: string): void;
  info(o: object, m?: string): void;
  warn(o: object, m?: string): void;
  error(o: object, m?: string): void;
} {
  const lines: LogLine[] = [];
  const at = (level: string) => (o: object, m?: string) =>
    void lines.push({ level, msg: m ?? '', fields: o as Record<string, unknown> });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** Re-signs a real token's claims with the API server's key, moved an hour into the past. */
function expired(token: string, saKeyPath: string): string {
  const [h, p] = token.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<
    string,
    unknown
  >;
  const shift = (k: string): void => {
    const v = claims[k];
    if (typeof v === 'number') claims[k] = v - 7200;
  };
  for (const k of ['iat', 'nbf', 'exp']) shift(k);
  const body = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  const sig = createSign('SHA256')
    .update(body)
    .sign({ key: readFileSync(saKeyPath), dsaEncoding: 'ieee-p1363' });
  return `${body}.${sig.toString('base64url')}`;
}

describe('auth callout: ServiceAccount tokens as Dyad identities', () => {
  let kube: KubeCluster;
  let nats: NatsServer;
  let kc: KubeConfig;
  let core: CoreV1Api;
  let dir: string;
  const authLog = recordingLogger();
  const buses: Bus[] = [];
  /** What started, stopped in reverse order whatever failed. */
  const cleanup: (() => Promise<void>)[] = [];

  const tokenFor = async (
    sa: string,
    pod: string | undefined,
    audiences: string[] = [AUDIENCE],
  ): Promise<string> => {
    const bound =
      pod === undefined
        ? {}
        : {
            boundObjectRef: {
              kind: 'Pod',
              apiVersion: 'v1',
              name: pod,
              uid: (await core.readNamespacedPod({ name: pod, namespace: NS })).metadata?.uid,
            },
          };
    const r = await core.createNamespacedServiceAccountToken({
      name: sa,
      namespace: NS,
      body: { spec: { audiences, expirationSeconds: 600, ...bound } },
    });
    return r.status?.token ?? '';
  };
  const tokenFile = (name: string, token: string): string => {
    const path = join(dir, name);
    writeFileSync(path, `${token}\n`, { mode: 0o600 });
    return path;
  };
  const busAs = async (token: string, identity: string): Promise<Bus> => {
    const bus = await connectBus({
      servers: nats.url,
      name: identity,
      tokenFile: tokenFile(`${identity}.token`, token),
      identity,
      logger: createLogger({ service: identity, level: 'silent' }),
      registry: createMetrics(),
      reconnect: { maxAttempts: 0 },
      connectTimeoutMs: 10_000,
    });
    buses.push(bus);
    return bus;
  };
  /** The server's answer to a raw connection with this token: undefined if admitted. */
  const refusal = async (token: string): Promise<string | undefined> => {
    try {
      const nc = await connect({ servers: nats.url, token, maxReconnectAttempts: 0 });
      await nc.close();
      return undefined;
    } catch (err) {
      return String(err);
    }
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dyad-callout-'));
    kube = await startKube();
    cleanup.push(() => kube.stop());
    kc = new KubeConfig();
    kc.loadFromFile(kube.kubeconfigPath);
    core = kc.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: NS } } });
    for (const sa of ['dyad-agent', 'dyad-ipam', 'dyad-bootstrap', 'someone-else']) {
      await core.createNamespacedServiceAccount({
        namespace: NS,
        body: { metadata: { name: sa }, automountServiceAccountToken: false },
      });
    }
    for (const node of ['node-a', 'node-b']) {
      await core.createNode({ body: { metadata: { name: node } } });
      await core.createNamespacedPod({
        namespace: NS,
        body: {
          metadata: { name: `agent-${node}` },
          spec: {
            nodeName: node,
            serviceAccountName: 'dyad-agent',
            automountServiceAccountToken: false,
            containers: [{ name: 'agent', image: 'dyad:test' }],
          },
        },
      });
    }
    // as the chart creates it: empty, for the callout to fill
    await core.createNamespacedSecret({ namespace: NS, body: { metadata: { name: SECRET } } });
    await startNatsAuthWhenNats();
    // the bootstrap service's part, as in the chart: admitted through the callout as
    // `bootstrap`, the one identity that may create the streams the agents publish into
    const boot = await busAs(
      await tokenFor('dyad-bootstrap', undefined),
      ServiceIdentity.bootstrap,
    );
    await boot.ensureStreams(ALL_STREAMS);
  }, 180_000);

  /**
   * As in the chart: the callout's keys first, then nats-server with the auth.conf the callout
   * wrote into the Secret, then the callout's connections.
   */
  async function startNatsAuthWhenNats(): Promise<NatsAuth> {
    await ensureCalloutKeys(secretStore(kc, NS, SECRET), SECRET);
    const s = await core.readNamespacedSecret({ name: SECRET, namespace: NS });
    const conf = Buffer.from(s.data?.[SecretKey.authConf] ?? '', 'base64').toString('utf8');
    nats = await startNats({ extraConfig: conf });
    cleanup.push(() => nats.stop());
    const a = await startNatsAuth({
      kubeConfig: kc,
      namespace: NS,
      secretName: SECRET,
      audience: AUDIENCE,
      servers: [nats.url],
      logger: authLog,
      registry: createMetrics(),
    });
    cleanup.push(() => a.stop());
    await vi.waitFor(
      () => {
        if (!a.ready()) throw new Error('nats-auth not ready');
      },
      { timeout: 30_000, interval: 100 },
    );
    return a;
  }

  afterAll(async () => {
    await Promise.allSettled(buses.map((b) => b.close()));
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it("the API server binds the agent's token to its pod's node (what the callout reads)", async () => {
    const review = await kc.makeApiClient(AuthenticationV1Api).createTokenReview({
      body: {
        spec: { token: await tokenFor('dyad-agent', 'agent-node-a'), audiences: [AUDIENCE] },
      },
    });
    expect(review.status?.user?.extra?.[NODE_NAME_EXTRA]).toEqual(['node-a']);
  });

  it("node A's token connects with node A's permissions and cannot publish node B's records", async () => {
    const bus = await busAs(await tokenFor('dyad-agent', 'agent-node-a'), agentIdentity('node-a'));
    // its own node's endpoint: stored (a JetStream publish, whose ack comes to its own inbox)
    const ack = await bus.jsPublish(EndpointReport, agentEndpointSubject('node-a', 'c1', 'eth0'), {
      op: 'upsert',
      endpoint: endpoint('node-a', 'c1'),
    });
    expect(ack.stream).toBe(AgentStream.name);
    // node B's: refused by the server (no ack)
    await expect(
      bus.jsPublish(EndpointReport, agentEndpointSubject('node-b', 'c2', 'eth0'), {
        op: 'upsert',
        endpoint: endpoint('node-b', 'c2'),
      }),
    ).rejects.toThrow();
    // and no stream administration
    await expect(bus.purgeSubjects(AgentStream.name, '>')).rejects.toThrow();
  });

  it('a service token is that service (ipam), with none of an agent subject', async () => {
    const bus = await busAs(await tokenFor('dyad-ipam', undefined), 'ipam');
    await expect(
      bus.jsPublish(EndpointReport, agentEndpointSubject('node-a', 'c3', 'eth0'), {
        op: 'upsert',
        endpoint: endpoint('node-a', 'c3'),
      }),
    ).rejects.toThrow();
    expect(bus.isConnected()).toBe(true);
  });

  it('refuses a foreign ServiceAccount, a wrong audience, an expired and a garbage token', async () => {
    const foreign = await tokenFor('someone-else', undefined);
    const apiAudience = await tokenFor('dyad-agent', 'agent-node-a', [
      'https://kubernetes.default.svc.cluster.local',
    ]);
    const old = expired(
      await tokenFor('dyad-agent', 'agent-node-a'),
      join(kube.dir, 'pki', 'sa.key'),
    );
    for (const token of [foreign, apiAudience, old, 'garbage', '']) {
      expect(await refusal(token), `token ${token.slice(0, 12)}…`).toMatch(/authorization/i);
    }
    const reasons = authLog.lines
      .filter((l) => l.msg === 'NATS connection refused')
      .map((l) => String(l.fields.reason));
    expect(
      reasons.some((r) => r.includes(`system:serviceaccount:${NS}:someone-else is no Dyad`)),
    ).toBe(true);
    expect(
      reasons.filter((r) => r.startsWith('token not authenticated')).length,
    ).toBeGreaterThanOrEqual(3);
  });

  it(
    'an agent token whose pod is gone is refused (bound tokens die with their pod)',
    { timeout: 90_000 },
    async () => {
      const token = await tokenFor('dyad-agent', 'agent-node-b');
      expect(await refusal(token)).toBeUndefined();
      await core.deleteNamespacedPod({
        name: 'agent-node-b',
        namespace: NS,
        gracePeriodSeconds: 0,
      });
      // the API server's token cache and pod informer may admit it a few seconds longer
      const answer = await vi.waitFor(
        async () => {
          const r = await refusal(token);
          if (r === undefined) throw new Error("the deleted pod's token is still admitted");
          return r;
        },
        { timeout: 60_000, interval: 500 },
      );
      expect(answer).toMatch(/authorization/i);
    },
  );
});
