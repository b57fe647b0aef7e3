import { PassThrough } from 'node:stream';
import { connectBus } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import { IPAM_KV_BUCKET, IpamKey, IpamKvBucket } from '@dyad/contracts';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Exit, run } from '../src/index.ts';
import { ipamListCommand } from '../src/commands/ipam-list.ts';
import type { listing } from '../src/commands/ipam-list.ts';
import { node, slot } from './ipam-fixtures.ts';

describe('dyad ipam list (against NATS)', () => {
  let nats: NatsServer;
  let bus: Bus;

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
    await bus?.close();
    await nats?.stop();
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
    expect(await run(['ipam', 'list'], t.io, [ipamListCommand])).toBe(Exit.unavailable);
    expect(t.err()).toContain(`no KV bucket ${IPAM_KV_BUCKET}`);
  });

  it('reads node blocks and pod slots from the DYAD_IPAM bucket', async () => {
    await bus.ensureKv([IpamKvBucket]);
    const kv = await bus.kv(IPAM_KV_BUCKET);
    const put = (k: string, v: unknown) => kv.put(k, JSON.stringify(v));
    await put(IpamKey.config, {
      v: 1,
      families: [
        { family: 'IPv4', cidrs: ['198.18.0.0/15'], maskSize: 24 },
        { family: 'IPv6', cidrs: ['fd00:d1ad::/104'], maskSize: 120 },
      ],
    });
    await put(IpamKey.node('n1'), node('n1', '198.18.1', 'fd00:d1ad::1'));
    await put(IpamKey.node('n2.lab'), node('n2.lab', '198.18.2', 'fd00:d1ad::2'));
    await put(IpamKey.slot('n1', 0), slot(0, 'web-0', '198.18.1', 'fd00:d1ad::1'));
    await put(IpamKey.slot('n2.lab', 7), slot(7, 'db-0', '198.18.2', 'fd00:d1ad::2'));

    const t = io();
    expect(await run(['ipam', 'list', '-o', 'json'], t.io, [ipamListCommand])).toBe(Exit.ok);
    const l = JSON.parse(t.out()) as ReturnType<typeof listing>;
    expect(
      l.nodes.map((n) => [n.name, n.blocks.map((b) => `${b.cidr} ${b.used}/${b.free}`)]),
    ).toEqual([
      ['n1', ['198.18.1.0/24 1/252', 'fd00:d1ad::100/120 1/252']],
      ['n2.lab', ['198.18.2.0/24 1/252', 'fd00:d1ad::200/120 1/252']],
    ]);
    expect(l.pods.map((p) => [p.node, p.slot, p.pod])).toEqual([
      ['n1', 0, 'web-0'],
      ['n2.lab', 7, 'db-0'],
    ]);

    const one = io();
    expect(
      await run(['ipam', 'list', '--node', 'n2.lab', '--nats', nats.url], one.io, [
        ipamListCommand,
      ]),
    ).toBe(Exit.ok);
    const text = one.out();
    expect(text).toContain('n2.lab');
    expect(text).not.toMatch(/^n1 /m);
  });
});
