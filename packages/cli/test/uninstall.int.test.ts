// `dyad uninstall` against a real nats-server: it asks every node kube-bridge published (not a
// deleted one), reports each agent's answer, and fails within --timeout-s for a node whose agent
// never answers; an agent that subscribes late (restarting) is asked again.
import { PassThrough } from 'node:stream';
import { connectBus } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import {
  K8sStream,
  NodeEvent,
  UninstallReply,
  UninstallRequest,
  k8sObjectSubject,
  uninstallSubject,
} from '@dyad/contracts';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { beforeAll, describe, expect, it } from 'vitest';
import { Exit, run } from '../src/index.ts';
import { uninstallCommand } from '../src/commands/uninstall.ts';
import type { NodeOutcome } from '../src/commands/uninstall.ts';

describe('dyad uninstall (against NATS)', () => {
  let nats: NatsServer;
  let bus: Bus;

  beforeAll(async () => {
    nats = await startNats();
    bus = await connectBus({
      servers: nats.url,
      name: 'agents',
      logger: createLogger({ service: 'agents', level: 'silent' }),
      registry: createMetrics({ processMetrics: false }),
    });
    await bus.ensureStreams([K8sStream]);
    const node = (name: string, op: 'upsert' | 'delete') =>
      bus.jsPublish(NodeEvent, k8sObjectSubject('Node', undefined, name), {
        op,
        object: {
          metadata: { name, uid: `u-${name}`, resourceVersion: '1' },
          spec: {},
          status: { ready: true },
        },
      });
    await node('n1', 'upsert');
    await node('n2.lab', 'upsert');
    await node('gone', 'delete');
    return async () => {
      await bus.close();
      await nats.stop();
    };
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

  const serve = (node: string, problems: string[] = [], onAsked?: () => void) =>
    bus.serve(
      UninstallRequest,
      uninstallSubject(node),
      (r) => {
        onAsked?.();
        return { node: r.value.node, removed: [`conflist of ${r.value.node}`], problems };
      },
      UninstallReply,
    );

  it('asks every published node and fails, in time, for one whose agent never answers', async () => {
    const a = serve('n1');
    try {
      const t = io();
      const code = await run(['uninstall', '--timeout-s', '2', '-o', 'json'], t.io, {
        commands: [uninstallCommand],
      });
      expect(code).toBe(Exit.failed);
      const got = JSON.parse(t.out()) as NodeOutcome[];
      expect(got.map((o) => [o.node, o.result])).toEqual([
        ['n1', 'clean'],
        ['n2.lab', 'no-answer'],
      ]);
      expect(got[0]?.removed).toEqual(['conflist of n1']);
    } finally {
      await a.stop();
    }
  });

  it('exit 0 when every agent answers clean, also one that subscribes only after being asked', async () => {
    let n1Asked: () => void = () => undefined;
    const n1 = new Promise<void>((r) => (n1Asked = r));
    const a = serve('n1', [], () => n1Asked());
    const t = io();
    const asked = run(['uninstall', '--timeout-s', '20'], t.io, { commands: [uninstallCommand] });
    // every node is asked at once: once n1 is, n2's first request has gone out to no responder;
    // its agent comes up only now
    await n1;
    const b = serve('n2.lab');
    try {
      expect(await asked).toBe(Exit.ok);
      expect(t.out()).toMatch(/n2\.lab\s+clean/);
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  it('an answer with problems fails the command and shows them', async () => {
    const a = serve('n1', ['pins: EBUSY']);
    try {
      const t = io();
      expect(
        await run(['uninstall', '--node', 'n1', '--timeout-s', '5'], t.io, {
          commands: [uninstallCommand],
        }),
      ).toBe(Exit.failed);
      expect(t.out()).toMatch(/n1\s+problems\s+1\s+pins: EBUSY/);
    } finally {
      await a.stop();
    }
  });
});
