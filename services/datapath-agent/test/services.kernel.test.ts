// The agent follows the router's Services for its node and writes the LB maps through the
// reconciler: a pod reaches another pod through a cluster IP of either family, a frontend
// without backends refuses at once, a Service removed leaves no frontend behind.
import { fileURLToPath } from 'node:url';
import { RouterServiceEvent, RouterStream, routerServiceSubject } from '@dyad/contracts';
import type { BpfLbEntryValue, RouterServiceEntryValue } from '@dyad/contracts';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { ensureBpfBuilt, ensureCniBuilt } from './helpers/build.ts';
import { kernelRequired, kernelSkipReason } from './helpers/kernel.ts';
import { AgentHarness, apiGet, spawnIn } from './helpers/harness.ts';
import type { AgentHandle } from './helpers/harness.ts';

const skip = kernelSkipReason();
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

const WHO = fileURLToPath(
  new URL('../../../packages/libbpf-ts/test/helpers/who.ts', import.meta.url),
);
const VIP4 = '198.18.96.10';
const VIP6 = 'fd00:96::a';

interface Pod {
  netns: string;
  v4: string;
  v6: string;
}

describe.skipIf(skip !== undefined)('Services from NATS into the LB maps', () => {
  const lab = new AgentHarness();
  let agent: AgentHandle;
  const pods: Record<string, Pod> = {};
  let revision = 0;

  const lb = async () => (await apiGet(agent.apiSocket, '/v1/bpf/lb')).body as BpfLbEntryValue[];
  const who = async (from: Pod, proto: 'tcp' | 'udp', addr: string) => {
    const r = await lab.nsExec(from.netns, [
      process.execPath,
      WHO,
      'client',
      proto,
      addr,
      '80',
      '2000',
      '1',
    ]);
    return { code: r.code, out: r.stdout.trim(), err: r.stderr };
  };
  const publish = async (service: RouterServiceEntryValue | undefined) => {
    const subject = routerServiceSubject('n1', 'shop', 'web');
    await lab.bus.jsPublish(
      RouterServiceEvent,
      subject,
      service === undefined
        ? { op: 'delete', node: 'n1', revision: ++revision, namespace: 'shop', name: 'web' }
        : { op: 'upsert', node: 'n1', revision: ++revision, service },
    );
  };
  const web = (backends: boolean): RouterServiceEntryValue => {
    const b = pods['pb'] as Pod;
    return {
      namespace: 'shop',
      name: 'web',
      frontends: (['TCP', 'UDP'] as const).flatMap((protocol) => [
        {
          family: 'IPv4' as const,
          address: VIP4,
          port: 80,
          protocol,
          portName: '',
          backends: backends ? [{ address: b.v4, port: 7000, state: 'ready' as const }] : [],
        },
        {
          family: 'IPv6' as const,
          address: VIP6,
          port: 80,
          protocol,
          portName: '',
          backends: backends ? [{ address: b.v6, port: 7000, state: 'ready' as const }] : [],
        },
      ]),
      internalTrafficPolicy: 'Cluster',
      problems: [],
    };
  };

  beforeAll(async () => {
    ensureBpfBuilt();
    ensureCniBuilt();
    await lab.start();
    await lab.bus.ensureStreams([RouterStream]);
    await lab.addNode('n1');
    agent = await lab.startAgent('n1');
    for (const name of ['pa', 'pb']) {
      const netns = lab.addPodNetns(name);
      const r = await lab.cnitool(agent, 'add', netns, { namespace: 'default', name });
      if (r.code !== 0) throw new Error(`ADD ${name}: ${r.stdout}${r.stderr}`);
      const ips = (JSON.parse(r.stdout) as { ips: Array<{ address: string }> }).ips.map(
        (i) => i.address.split('/')[0] ?? '',
      );
      pods[name] = { netns, v4: ips[0] ?? '', v6: ips[1] ?? '' };
    }
    const server = spawnIn((pods['pb'] as Pod).netns, [
      process.execPath,
      WHO,
      'server',
      'pb',
      '7000',
    ]);
    lab.spawnChild(server);
    await new Promise<void>((resolve, reject) => {
      server.stdout?.on('data', (d: Buffer) => {
        if (d.toString().includes('ready')) resolve();
      });
      server.once('exit', (code) => reject(new Error(`who server exited ${code}`)));
    });
  });

  afterAll(async () => {
    await lab.cleanup();
  });

  test('a Service published for the node is served in both families, TCP and UDP', async () => {
    await publish(web(true));
    await vi.waitFor(async () => expect(await lb()).toHaveLength(4), { timeout: 15_000 });
    const entries = await lb();
    for (const e of entries) expect(e.backends).toBe(1);
    const a = pods['pa'] as Pod;
    for (const proto of ['tcp', 'udp'] as const)
      for (const vip of [VIP4, VIP6])
        expect(await who(a, proto, vip)).toMatchObject({ code: 0, out: 'pb' });
  });

  test('the same Service without backends refuses at once', async () => {
    await publish(web(false));
    await vi.waitFor(async () => expect((await lb()).every((e) => e.backends === 0)).toBe(true), {
      timeout: 15_000,
    });
    const a = pods['pa'] as Pod;
    for (const proto of ['tcp', 'udp'] as const)
      for (const vip of [VIP4, VIP6]) expect((await who(a, proto, vip)).code).toBe(3);
  });

  test('a Service removed leaves no frontend, backend or table behind; dyad service list follows', async () => {
    await publish(web(true));
    await vi.waitFor(async () => expect((await lb()).every((e) => e.backends === 1)).toBe(true), {
      timeout: 15_000,
    });
    const listed = (await apiGet(agent.apiSocket, '/v1/services'))
      .body as RouterServiceEntryValue[];
    expect(listed.map((s) => `${s.namespace}/${s.name}`)).toEqual(['shop/web']);
    await publish(undefined);
    await vi.waitFor(async () => expect(await lb()).toEqual([]), { timeout: 15_000 });
    const status = (await apiGet(agent.apiSocket, '/v1/status')).body as {
      maps: Array<{ name: string; entries: number }>;
    };
    expect(status.maps.find((m) => m.name === 'dy_lb_backends')?.entries).toBe(0);
    expect((await apiGet(agent.apiSocket, '/v1/services')).body).toEqual([]);
  });
});
