import { PassThrough } from 'node:stream';
import { connectBus } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import {
  IdentityEvent,
  NodeDesiredStream,
  POLICY_STREAM,
  PodIdentityEvent,
  PodPolicyDesiredV2,
  PolicyStatusEvent,
  PolicyStream,
  nodePolicySubject,
  policyIdentitySubject,
  policyPodSubject,
  policyStatusSubject,
} from '@dyad/contracts';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Exit, run } from '../src/index.ts';
import { identityListCommand, policyGetCommand } from '../src/commands/policy-get.ts';
import type { IdentityRow, PolicyView } from '../src/commands/policy-view.ts';
import { compiled, identity, podIdentity, status } from './policy-fixtures.ts';

describe('dyad policy get and dyad identity list (against NATS)', () => {
  let nats: NatsServer;
  let bus: Bus;
  const commands = [policyGetCommand, identityListCommand];

  beforeAll(async () => {
    nats = await startNats();
    bus = await connectBus({
      servers: nats.url,
      name: 'cli-test',
      logger: createLogger({ service: 'cli-test', level: 'silent' }),
      registry: createMetrics({ processMetrics: false }),
    });
  });
  afterAll(async () => {
    await bus.close();
    await nats.stop();
  });

  function io() {
    const out = new PassThrough();
    const err = new PassThrough();
    const text = (s: PassThrough) => (s.read() as Buffer | null)?.toString() ?? '';
    return {
      io: { stdout: out, stderr: err, env: { NATS_URL: nats.url } },
      out: () => text(out),
      err: () => text(err),
    };
  }

  it('says so when the policy service never ran', async () => {
    const t = io();
    expect(await run(['identity', 'list'], t.io, { commands })).toBe(Exit.unavailable);
    expect(t.err()).toContain(`no stream ${POLICY_STREAM}`);
  });

  it("reads a pod's identity, its node's compiled policy and its policies' problems", async () => {
    await bus.ensureStreams([PolicyStream, NodeDesiredStream]);
    await bus.jsPublish(
      IdentityEvent,
      policyIdentitySubject(0x10001),
      identity(0x10001, ['k8s:pod=a']),
    );
    await bus.jsPublish(
      IdentityEvent,
      policyIdentitySubject(0x10002),
      identity(0x10002, ['k8s:pod=b']),
    );
    await bus.jsPublish(
      PodIdentityEvent,
      policyPodSubject('x', 'a'),
      podIdentity('x', 'a', 0x10001, 'node-1'),
    );
    await bus.jsPublish(
      PodIdentityEvent,
      policyPodSubject('x', 'b'),
      podIdentity('x', 'b', 0x10002, 'node-2'),
    );
    await bus.jsPublish(
      PodPolicyDesiredV2,
      nodePolicySubject('node-1', 'x', 'a'),
      compiled({
        policies: ['a-from-b'],
        ingress: {
          enforce: true,
          peers: [
            { identities: [0x10002], allow: [{ protocol: 'TCP', ports: { from: 80, to: 80 } }] },
          ],
          cidrs: { IPv4: [], IPv6: [{ prefix: 'fd00::/8', allow: [{ protocol: 'UDP' }] }] },
        },
      }),
    );
    await bus.jsPublish(
      PolicyStatusEvent,
      policyStatusSubject('x', 'a-from-b'),
      status('x', 'a-from-b', [
        { code: 'bad-port-range', path: 'spec.ingress[0].ports[1]', message: 'allows nothing' },
      ]),
    );

    const t = io();
    expect(await run(['policy', 'get', 'x/a', '-o', 'json'], t.io, { commands })).toBe(Exit.ok);
    const v = JSON.parse(t.out()) as PolicyView;
    expect(v.identity).toBe(0x10001);
    expect(v.node).toBe('node-1');
    expect(v.ingress?.rules).toEqual([
      { family: 'both', peer: '65538 (k8s:pod=b)', allow: 'TCP/80' },
      { family: 'IPv6', peer: 'fd00::/8', allow: 'UDP/any' },
    ]);
    expect(v.problems).toHaveLength(1);

    const table = io();
    expect(await run(['policy', 'get', 'x/a'], table.io, { commands })).toBe(Exit.ok);
    expect(table.out()).toContain('Selected by: a-from-b');

    // x/b has an identity but its node has no compiled policy yet
    const b = io();
    expect(await run(['policy', 'get', 'x/b', '-o', 'json'], b.io, { commands })).toBe(Exit.ok);
    expect((JSON.parse(b.out()) as PolicyView).computed).toBe(false);

    const none = io();
    expect(await run(['policy', 'get', 'x/nope'], none.io, { commands })).toBe(Exit.failed);
    expect(none.err()).toContain('x/nope: no identity');

    const bad = io();
    expect(await run(['policy', 'get', 'x'], bad.io, { commands })).toBe(Exit.usage);

    const ids = io();
    expect(await run(['identity', 'list', '-o', 'json'], ids.io, { commands })).toBe(Exit.ok);
    const rows = JSON.parse(ids.out()) as IdentityRow[];
    expect(rows.find((r) => r.identity === 0x10001)?.pods).toEqual(['x/a']);
    expect(rows.filter((r) => r.identity < 0x10000)).toHaveLength(5);
  });
});
