import { PassThrough } from 'node:stream';
import { connectBus } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import {
  AddressesAllocated,
  AddressesReleased,
  IPAM_NODES_STREAM,
  IpamAllocationsStream,
  IpamNodeEvent,
  IpamNodesStream,
  NodeBlocksHeld,
  ipamAllocSubject,
  ipamHeldSubject,
  ipamNodeSubject,
} from '@dyad/contracts';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { Exit, run } from '../src/index.ts';
import { ipamListCommand } from '../src/commands/ipam-list.ts';
import type { listing } from '../src/commands/ipam-list.ts';
import { allocated, assignment } from './ipam-fixtures.ts';

describe('dyad ipam list (against NATS)', () => {
  let nats: NatsServer;
  let bus: Bus;

  beforeAll(async () => {
    nats = await startNats();
    try {
      bus = await connectBus({
        servers: nats.url,
        name: 'cli-test',
        logger: createLogger({ service: 'cli-test', level: 'silent' }),
        registry: createMetrics({ processMetrics: false }),
      });
    } catch (err) {
      await nats.stop();
      throw err;
    }
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

  it('says so when there is no IPAM state', async () => {
    const t = io();
    expect(await run(['ipam', 'list'], t.io, { commands: [ipamListCommand] })).toBe(
      Exit.unavailable,
    );
    expect(t.err()).toContain(`no stream ${IPAM_NODES_STREAM}`);
  });

  it('reads every block set from DYAD_IPAM_NODES and the allocated sandboxes from DYAD_IPAM_ALLOCATIONS', async () => {
    await bus.ensureStreams([IpamNodesStream]);
    const assign = (n: string, v4: string, v6: string, sets: number) =>
      bus.jsPublish(IpamNodeEvent, ipamNodeSubject(n), assignment(n, v4, v6, sets));
    await assign('n1', '198.18', 'fd00:d1ad::1:', 2);
    await assign('n2.lab', '198.19', 'fd00:d1ad::2:', 1);

    // Without any agent record yet, the blocks alone.
    const empty = io();
    expect(
      await run(['ipam', 'list', '-o', 'json'], empty.io, { commands: [ipamListCommand] }),
    ).toBe(Exit.ok);
    expect((JSON.parse(empty.out()) as ReturnType<typeof listing>).pods).toEqual([]);

    await bus.ensureStreams([IpamAllocationsStream]);
    const alloc = (p: ReturnType<typeof allocated>) =>
      bus.jsPublish(AddressesAllocated, ipamAllocSubject(p.node, p.containerId), p);
    await alloc(allocated('n1', 0, 'web-0', '198.18', 'fd00:d1ad::1:'));
    await alloc(allocated('n1', 3, 'web-1', '198.18', 'fd00:d1ad::1:', 1));
    await alloc(allocated('n2.lab', 7, 'db-0', '198.19', 'fd00:d1ad::2:'));
    // A sandbox whose addresses were released: its last record is the release, not listed.
    const gone = allocated('n1', 5, 'old-0', '198.18', 'fd00:d1ad::1:');
    await alloc(gone);
    await bus.jsPublish(AddressesReleased, ipamAllocSubject('n1', gone.containerId), {
      ...gone,
      reason: 'request',
    });
    // The agent's held report shares the stream: not a pod.
    await bus.jsPublish(NodeBlocksHeld, ipamHeldSubject('n1'), {
      node: 'n1',
      blocks: assignment('n1', '198.18', 'fd00:d1ad::1:', 2).blocks,
      at: new Date().toISOString(),
    });

    const t = io();
    expect(await run(['ipam', 'list', '-o', 'json'], t.io, { commands: [ipamListCommand] })).toBe(
      Exit.ok,
    );
    const l = JSON.parse(t.out()) as ReturnType<typeof listing>;
    expect(l.families).toEqual(['IPv4', 'IPv6']);
    expect(
      l.nodes.map((n) => [n.name, n.blocks.map((b) => `${b.set} ${b.cidr} ${b.used}/${b.free}`)]),
    ).toEqual([
      [
        'n1',
        [
          '0 198.18.0.0/24 1/252',
          '0 fd00:d1ad::1:100/120 1/253',
          '1 198.18.1.0/24 1/252',
          '1 fd00:d1ad::1:200/120 1/253',
        ],
      ],
      ['n2.lab', ['0 198.19.0.0/24 1/252', '0 fd00:d1ad::2:100/120 1/253']],
    ]);
    expect(l.pods.map((p) => [p.node, p.slot, p.pod])).toEqual([
      ['n1', 0, 'web-0'],
      ['n1', 3, 'web-1'],
      ['n2.lab', 7, 'db-0'],
    ]);

    const one = io();
    expect(
      await run(['ipam', 'list', '--node', 'n2.lab', '--nats', nats.url], one.io, {
        commands: [ipamListCommand],
      }),
    ).toBe(Exit.ok);
    const text = one.out();
    expect(text).toMatch(/^n2\.lab\s+IPv4\s+198\.19\.0\.0\/24/m);
    expect(text).toMatch(/^n2\.lab\s+default\s+db-0\s+198\.19\.0\.9\s+fd00:d1ad::2:109/m);
    expect(text).not.toMatch(/^n1 /m);

    const wide = io();
    expect(
      await run(['ipam', 'list', '-o', 'wide', '--node', 'n1'], wide.io, {
        commands: [ipamListCommand],
      }),
    ).toBe(Exit.ok);
    const wideText = wide.out();
    expect(wideText).toMatch(/^NODE\s+SET\s+FAMILY\s+BLOCK/m);
    expect(wideText).toMatch(/^n1\s+3\s+default\s+web-1\s+uid-web-1\s+198\.18\.1\.5/m);
    const y = io();
    expect(await run(['ipam', 'list', '-o', 'yaml'], y.io, { commands: [ipamListCommand] })).toBe(
      Exit.ok,
    );
    expect(parseYaml(y.out())).toEqual(l);
  });
});

// The credentials every service reads reach NATS the same way from the CLI: a server that wants
// a token refuses `dyad ipam list` without NATS_TOKEN and serves it with it (the IPAM stream is
// absent there, which the CLI reports only once it got in).
describe('dyad ipam list (NATS credentials)', () => {
  let nats: NatsServer;

  beforeAll(async () => {
    nats = await startNats({ extraArgs: ['--auth', 's3cret-token'] });
    return () => nats.stop();
  });

  function io(env: Record<string, string>) {
    const err = new PassThrough();
    return {
      io: { stdout: new PassThrough(), stderr: err, env: { NATS_URL: nats.url, ...env } },
      err: () => (err.read() as Buffer | null)?.toString() ?? '',
    };
  }

  it('NATS_TOKEN', async () => {
    const without = io({});
    expect(await run(['ipam', 'list'], without.io, { commands: [ipamListCommand] })).toBe(
      Exit.unavailable,
    );
    expect(without.err()).toMatch(/cannot reach NATS.*authori[sz]ation/i);
    const wrong = io({ NATS_TOKEN: 'nope' });
    expect(await run(['ipam', 'list'], wrong.io, { commands: [ipamListCommand] })).toBe(
      Exit.unavailable,
    );
    expect(wrong.err()).toMatch(/cannot reach NATS/);
    const right = io({ NATS_TOKEN: 's3cret-token' });
    expect(await run(['ipam', 'list'], right.io, { commands: [ipamListCommand] })).toBe(
      Exit.unavailable,
    );
    expect(right.err()).toContain(`no stream ${IPAM_NODES_STREAM}`);
  });

  it('a setting its schema refuses is a usage error', async () => {
    const t = io({ NATS_USER: '' });
    expect(await run(['ipam', 'list'], t.io, { commands: [ipamListCommand] })).toBe(Exit.usage);
    expect(t.err()).toContain('NATS_USER');
  });
});
