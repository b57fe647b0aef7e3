import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { connectBus } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import { AgentMonitor, FLOW_STREAM, FlowEvent, FlowStream, flowSubject } from '@dyad/contracts';
import type { FlowEventValue } from '@dyad/contracts';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Exit, run } from '../src/index.ts';
import { monitorCommand } from '../src/commands/monitor.ts';
import { observeCommand } from '../src/commands/observe.ts';
import { flowLine } from '../src/commands/flow-view.ts';

const base = FlowEvent.schema.parse({
  time: '2026-12-06T04:40:00.123Z',
  node_name: 'n1',
  verdict: 'DROPPED',
  drop_reason: 10,
  drop_reason_desc: 'POLICY_DENIED',
  policy_verdict: 'DENIED',
  traffic_direction: 'INGRESS',
  IP: { source: '198.18.0.5', destination: '198.18.0.6', ipVersion: 'IPv4' },
  l4: { UDP: { source_port: 40000, destination_port: 9999 } },
  source: { identity: 0x10001, namespace: 'shop', pod_name: 'pa', labels: [] },
  destination: { identity: 0x10002, namespace: 'shop', pod_name: 'pb', labels: [] },
  interface: { index: 7 },
  is_reply: false,
  event_type: { type: 1 },
  Type: 'L3_L4',
});

/** Flows of two families, both verdicts, three namespaces, two nodes. */
const FLOWS: FlowEventValue[] = [
  base,
  { ...base, IP: { source: 'fd00:d1ad::5', destination: 'fd00:d1ad::6', ipVersion: 'IPv6' } },
  {
    ...base,
    verdict: 'FORWARDED',
    drop_reason: undefined,
    drop_reason_desc: undefined,
    policy_verdict: 'ALLOWED',
    event_type: { type: 4 },
  },
  { ...base, node_name: 'n2', source: { ...base.source, namespace: 'web', pod_name: 'w1' } },
  {
    ...base,
    source: { ...base.source, namespace: 'other', pod_name: 'o1' },
    destination: { ...base.destination, namespace: 'other', pod_name: 'o2' },
  },
].map((f) => FlowEvent.schema.parse(JSON.parse(JSON.stringify(f))));

function io(env: Record<string, string>) {
  const out = new PassThrough();
  const err = new PassThrough();
  const text = (s: PassThrough) => (s.read() as Buffer | null)?.toString() ?? '';
  return { io: { stdout: out, stderr: err, env }, out: () => text(out), err: () => text(err) };
}

const jsonLines = (s: string) =>
  s
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as FlowEventValue);

describe('dyad observe (against NATS)', () => {
  let nats: NatsServer;
  let bus: Bus;
  const commands = [observeCommand];

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

  it('says so when no agent ever published flows', async () => {
    const t = io({ NATS_URL: nats.url });
    expect(await run(['observe'], t.io, { commands })).toBe(Exit.unavailable);
    expect(t.err()).toContain(`no stream ${FLOW_STREAM}`);
  });

  it('selects by namespace at either end, verdict, family, node and pod', async () => {
    await bus.ensureStreams([FlowStream]);
    for (const f of FLOWS) await bus.jsPublish(FlowEvent, flowSubject(f), f);
    const observe = async (...args: string[]) => {
      const t = io({ NATS_URL: nats.url });
      expect(await run(['observe', '-o', 'json', ...args], t.io, { commands }), t.err()).toBe(0);
      return jsonLines(t.out());
    };
    expect(await observe()).toEqual(FLOWS);
    expect(await observe('--last', '2')).toEqual(FLOWS.slice(3));
    expect(await observe('--verdict', 'dropped', '--family', 'IPv6')).toEqual([FLOWS[1]]);
    expect(await observe('--namespace', 'web')).toEqual([FLOWS[3]]);
    expect(
      await observe('--namespace', 'shop', '--verdict', 'dropped', '--family', 'ipv4'),
    ).toEqual([FLOWS[0], FLOWS[3]]);
    expect(await observe('--node', 'n2')).toEqual([FLOWS[3]]);
    expect(await observe('--pod', 'other/o2')).toEqual([FLOWS[4]]);
    expect(await observe('--namespace', 'web', '--pod', 'w1')).toEqual([FLOWS[3]]);
    const t = io({ NATS_URL: nats.url });
    expect(await run(['observe', '--namespace', 'web'], t.io, { commands })).toBe(0);
    expect(t.out()).toBe(`${flowLine(FLOWS[3] as FlowEventValue)}\n`);
  });

  it('--follow prints flows published after it started, filtered, until --max', async () => {
    const t = io({ NATS_URL: nats.url });
    const done = run(
      [
        'observe',
        '--follow',
        '--verdict',
        'dropped',
        '--family',
        'IPv6',
        '--max',
        '1',
        '-o',
        'json',
      ],
      t.io,
      { commands },
    );
    // publish until the follower has printed one: it starts after the stored flows
    const fresh = { ...(FLOWS[1] as FlowEventValue), time: '2026-12-06T05:00:00.000Z' };
    let code: number | undefined;
    void done.then((c) => (code = c));
    while (code === undefined) {
      await bus.jsPublish(
        FlowEvent,
        flowSubject(FLOWS[0] as FlowEventValue),
        FLOWS[0] as FlowEventValue,
      );
      await bus.jsPublish(FlowEvent, flowSubject(fresh), fresh);
      await new Promise((r) => setImmediate(r));
    }
    expect(code).toBe(0);
    expect(jsonLines(t.out())).toEqual([fresh]);
  });
});

describe('dyad monitor (against an agent socket)', () => {
  let dir: string;
  let server: Server;
  const clients = new Set<ServerResponse>();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dyad-cli-'));
    server = createServer((req, res) => {
      if (new URL(req.url ?? '/', 'http://x').pathname !== AgentMonitor.path) {
        res.writeHead(404).end('{}');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      for (const f of FLOWS) res.write(`${JSON.stringify(f)}\n`);
      clients.add(res);
    });
    await new Promise<void>((resolve) => server.listen(join(dir, 'agent.sock'), resolve));
  });
  afterAll(() => {
    server.closeAllConnections();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('prints the agent’s flows through the filters and stops after --max', async () => {
    const t = io({});
    const code = await run(
      [
        'monitor',
        '--agent-socket',
        join(dir, 'agent.sock'),
        '--namespace',
        'shop',
        '--verdict',
        'dropped',
        '--max',
        '2',
        '-o',
        'json',
      ],
      t.io,
      { commands: [monitorCommand] },
    );
    expect(code, t.err()).toBe(0);
    expect(jsonLines(t.out())).toEqual([FLOWS[0], FLOWS[1]]);
  });

  it('refuses a flow the contract does not accept', async () => {
    server.removeAllListeners('request');
    server.on('request', (_req, res: ServerResponse) => {
      res.writeHead(200);
      res.write('{"verdict":"MAYBE"}\n');
    });
    const t = io({});
    const code = await run(['monitor', '--agent-socket', join(dir, 'agent.sock')], t.io, {
      commands: [monitorCommand],
    });
    expect(code).toBe(Exit.failed);
    expect(t.err()).toContain('does not match the contract');
  });
});
