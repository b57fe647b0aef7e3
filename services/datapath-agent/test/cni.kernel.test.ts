// cnitool drives dyad-cni against a real agent (in a node netns), real IPAM and nats-server:
// ADD gives a pod one address per family and its datapath, pods reach each other over both,
// CHECK passes, DEL and GC leave nothing behind.
import { PassThrough } from 'node:stream';
import {
  AGENT_STREAM,
  EndpointReport,
  agentEndpointFilter,
  agentEndpointSubject,
} from '@dyad/contracts';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
// Relative: the CLI is not a dependency of the agent, only its client.
import { run as dyad } from '@dyad/cli';
import { ensureBpfBuilt, ensureCniBuilt } from './helpers/build.ts';
import { kernelRequired, kernelSkipReason } from './helpers/kernel.ts';
import { AgentHarness, apiGet, run } from './helpers/harness.ts';
import type { AgentHandle } from './helpers/harness.ts';

const skip = kernelSkipReason();
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

interface CniResultJson {
  cniVersion: string;
  interfaces: Array<{ name: string; mac: string; sandbox?: string }>;
  ips: Array<{ address: string; gateway: string; interface: number }>;
  routes: Array<{ dst: string; gw: string }>;
}

interface PodAddrs {
  v4: string;
  v6: string;
  netns: string;
  containerId: string;
}

function podAddresses(netns: string): Array<{ family: string; local: string; prefixlen: number }> {
  const j = JSON.parse(
    run('ip', ['-n', netns.replace('/run/netns/', ''), '-j', 'addr', 'show', 'dev', 'eth0']),
  ) as Array<{
    addr_info: Array<{ family: string; local: string; prefixlen: number; scope: string }>;
  }>;
  return (j[0]?.addr_info ?? []).filter((a) => a.scope === 'global');
}

describe.skipIf(skip !== undefined)('dyad-cni with cnitool, one node', () => {
  const lab = new AgentHarness();
  let agent: AgentHandle;
  const pods = new Map<string, PodAddrs>();

  beforeAll(async () => {
    ensureBpfBuilt();
    ensureCniBuilt();
    await lab.start();
    await lab.addNode('n1');
    agent = await lab.startAgent('n1');
  });

  afterAll(async () => {
    await lab.cleanup();
  });

  test('STATUS is ready', async () => {
    const r = await lab.cnitool(agent, 'status', '/dev/null');
    expect(r, r.stderr).toMatchObject({ code: 0 });
  });

  test.each(['pa', 'pb'])(
    'ADD %s gives one IPv4 and one IPv6 address with gateways and default routes',
    async (name) => {
      const netns = lab.addPodNetns(name);
      const r = await lab.cnitool(agent, 'add', netns, { namespace: 'default', name });
      expect(r.code, r.stderr).toBe(0);
      const res = JSON.parse(r.stdout) as CniResultJson;
      expect(res.cniVersion).toBe('1.1.0');
      expect(res.ips).toHaveLength(2);
      const v4 = res.ips.find((i) => i.address.includes('.'));
      const v6 = res.ips.find((i) => i.address.includes(':'));
      expect(v4?.address).toMatch(/^198\.1[89]\.\d+\.\d+\/32$/);
      expect(v6?.address).toMatch(/^fd00:d1ad:.*\/128$/);
      expect(res.routes.map((x) => x.dst).sort()).toEqual(['0.0.0.0/0', '::/0']);
      expect(res.interfaces[v4?.interface ?? -1]).toMatchObject({ name: 'eth0', sandbox: netns });
      // what the pod's netns really has
      const have = podAddresses(netns)
        .map((a) => `${a.local}/${a.prefixlen}`)
        .sort();
      expect(have).toEqual([v4?.address, v6?.address].sort());
      const endpoints = (await apiGet(agent.apiSocket, '/v1/endpoints')).body as {
        containerId: string;
        pod: { name: string };
      }[];
      const containerId = endpoints.find((e) => e.pod.name === name)?.containerId ?? '';
      pods.set(name, {
        v4: (v4?.address ?? '').split('/')[0] ?? '',
        v6: (v6?.address ?? '').split('/')[0] ?? '',
        netns,
        containerId,
      });
    },
  );

  test.each([
    ['IPv4', 'v4'],
    ['IPv6', 'v6'],
  ] as const)('pods reach each other over %s (both directions)', async (_f, fam) => {
    const a = pods.get('pa');
    const b = pods.get('pb');
    if (!a || !b) throw new Error('pods missing');
    expect(await lab.ping(a.netns, b[fam], 3)).toEqual({ sent: 3, received: 3 });
    expect(await lab.ping(b.netns, a[fam], 3)).toEqual({ sent: 3, received: 3 });
  });

  test('the datapath maps hold both families of both pods', async () => {
    const eps = (await apiGet(agent.apiSocket, '/v1/bpf/endpoints')).body as Array<{
      address: string;
    }>;
    const addrs = [...pods.values()].flatMap((p) => [p.v4, p.v6]);
    expect(eps.map((e) => e.address).sort()).toEqual([...addrs].sort());
    const ipc = (await apiGet(agent.apiSocket, '/v1/bpf/ipcache')).body as Array<{
      prefix: string;
    }>;
    for (const p of pods.values()) {
      expect(ipc.map((e) => e.prefix)).toContain(`${p.v4}/32`);
      expect(ipc.map((e) => e.prefix)).toContain(`${p.v6}/128`);
    }
  });

  test('dyad status / endpoint list / bpf endpoint list show the dual-stack endpoints', async () => {
    const out = new PassThrough();
    const err = new PassThrough();
    const io = { stdout: out, stderr: err, env: {} };
    const read = () => (out.read() as Buffer | null)?.toString() ?? '';
    expect(await dyad(['status', '--socket', agent.apiSocket], io)).toBe(0);
    expect(read()).toMatch(/Agent:\s+Ready/);
    expect(await dyad(['endpoint', 'list', '--socket', agent.apiSocket], io)).toBe(0);
    const table = read();
    for (const [name, p] of pods) {
      const row = table.split('\n').find((l) => l.includes(`default/${name}`)) ?? '';
      expect(row).toContain(p.v4);
      expect(row).toContain(p.v6);
      expect(row).toContain('ready');
    }
    expect(
      await dyad(['bpf', 'endpoint', 'list', '-o', 'json', '--socket', agent.apiSocket], io),
    ).toBe(0);
    expect((JSON.parse(read()) as unknown[]).length).toBe(4);
  });

  test('each endpoint is reported on NATS (DYAD_AGENT, last value per endpoint)', async () => {
    const want = [...pods.values()].map((p) => p.containerId).sort();
    const reports = await vi.waitFor(
      async () => {
        const r = await lab.bus.snapshot([EndpointReport], {
          stream: AGENT_STREAM,
          filterSubjects: [agentEndpointFilter('n1')],
        });
        expect(r.size).toBeGreaterThanOrEqual(want.length);
        return r;
      },
      { timeout: 5000, interval: 100 },
    );
    const got = [...reports.values()].map((d) => d.value);
    expect(got.map((v) => v.endpoint.containerId).sort()).toEqual(want);
    for (const v of got) {
      expect(v.op).toBe('upsert');
      const p = [...pods.values()].find((x) => x.containerId === v.endpoint.containerId);
      expect(v.endpoint).toMatchObject({ ipv4: p?.v4, ipv6: p?.v6 });
    }
  });

  test('CHECK passes for both pods', async () => {
    for (const [name, p] of pods) {
      const r = await lab.cnitool(agent, 'check', p.netns, { namespace: 'default', name });
      expect(r, r.stderr).toMatchObject({ code: 0 });
    }
  });

  test('DEL leaves nothing behind: no veth, no map entry, addresses released; a second DEL succeeds', async () => {
    const a = pods.get('pa');
    if (!a) throw new Error('pod missing');
    const before = lab.vethsOf(agent.netns);
    expect(before).toHaveLength(2);
    const r = await lab.cnitool(agent, 'del', a.netns, { namespace: 'default', name: 'pa' });
    expect(r, r.stderr).toMatchObject({ code: 0 });
    expect(lab.vethsOf(agent.netns)).toHaveLength(1);
    const eps = (await apiGet(agent.apiSocket, '/v1/bpf/endpoints')).body as Array<{
      address: string;
    }>;
    expect(eps.map((e) => e.address)).not.toContain(a.v4);
    expect(eps.map((e) => e.address)).not.toContain(a.v6);
    const ipc = (await apiGet(agent.apiSocket, '/v1/bpf/ipcache')).body as Array<{
      prefix: string;
    }>;
    expect(ipc.map((e) => e.prefix)).not.toContain(`${a.v4}/32`);
    // the pod side went with its host peer
    expect(run('ip', ['-n', a.netns.replace('/run/netns/', ''), '-br', 'link'])).not.toContain(
      'eth0',
    );
    expect(lab.ipamHeld('n1', a.containerId)).toBe(false);
    // the report is published after the reply: wait for the tombstone
    const ops = async () =>
      [
        ...(
          await lab.bus.snapshot([EndpointReport], {
            stream: AGENT_STREAM,
            filterSubjects: [agentEndpointSubject('n1', a.containerId, 'eth0')],
          })
        ).values(),
      ].map((d) => d.value.op);
    await vi.waitFor(async () => expect(await ops()).toEqual(['delete']), {
      timeout: 5000,
      interval: 100,
    });
    const again = await lab.cnitool(agent, 'del', a.netns, { namespace: 'default', name: 'pa' });
    expect(again, again.stderr).toMatchObject({ code: 0 });
    // and the other pod is untouched
    const b = pods.get('pb');
    expect(eps.map((e) => e.address)).toContain(b?.v4);
  });

  test('GC with no valid attachments removes the remaining endpoint and its addresses', async () => {
    const b = pods.get('pb');
    if (!b) throw new Error('pod missing');
    const r = await lab.cnitool(agent, 'gc', b.netns);
    expect(r, r.stderr).toMatchObject({ code: 0 });
    expect(lab.vethsOf(agent.netns)).toEqual([]);
    expect((await apiGet(agent.apiSocket, '/v1/endpoints')).body).toEqual([]);
    expect((await apiGet(agent.apiSocket, '/v1/bpf/endpoints')).body).toEqual([]);
    expect(lab.ipamHeld('n1', b.containerId)).toBe(false);
  });
});
