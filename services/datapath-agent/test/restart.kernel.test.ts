// Restart safety: kill -9 the agent while two pods ping each other over both families. Pinned
// maps and attached programs keep the traffic flowing; the restarted agent restores the same
// endpoints from its state file and the kernel, and writes no map entry that was healthy.
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { ensureBpfBuilt, ensureCniBuilt } from './helpers/build.ts';
import { kernelRequired, kernelSkipReason } from './helpers/kernel.ts';
import { AgentHarness, apiGet, run } from './helpers/harness.ts';
import type { AgentHandle } from './helpers/harness.ts';

const skip = kernelSkipReason();
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

interface Pod {
  netns: string;
  v4: string;
  v6: string;
  gw4?: string;
}

interface WriteStats {
  syscalls: number;
  written: number;
  deleted: number;
}

describe.skipIf(skip !== undefined)('agent restart', () => {
  const lab = new AgentHarness();
  let agent: AgentHandle;
  const pods: Record<string, Pod> = {};

  beforeAll(async () => {
    ensureBpfBuilt();
    ensureCniBuilt();
    await lab.start();
    await lab.addNode('n1');
    agent = await lab.startAgent('n1');
    for (const name of ['pa', 'pb']) {
      const netns = lab.addPodNetns(name);
      const r = await lab.cnitool(agent, 'add', netns, { namespace: 'default', name });
      if (r.code !== 0) throw new Error(`ADD ${name}: ${r.stdout}${r.stderr}`);
      const ips = (JSON.parse(r.stdout) as { ips: Array<{ address: string }> }).ips.map(
        (i) => i.address.split('/')[0] ?? '',
      );
      pods[name] = {
        netns,
        v4: ips.find((a) => a.includes('.')) ?? '',
        v6: ips.find((a) => a.includes(':')) ?? '',
      };
    }
  });

  afterAll(async () => {
    await lab.cleanup();
  });

  test('kill -9 while pods ping: no ping lost, same endpoints after restart, nothing rewritten', async () => {
    const a = pods['pa'] as Pod;
    const b = pods['pb'] as Pod;
    const endpointsBefore = (await apiGet(agent.apiSocket, '/v1/endpoints')).body;
    const bpfBefore = (await apiGet(agent.apiSocket, '/v1/bpf/endpoints')).body;
    const ipcacheBefore = (await apiGet(agent.apiSocket, '/v1/bpf/ipcache')).body;

    // 100 ms apart for about 12 s in both families and both directions, across kill and restart
    const count = 120;
    const flows: [string, string][] = [
      [a.netns, b.v4],
      [a.netns, b.v6],
      [b.netns, a.v4],
      [b.netns, a.v6],
    ];
    const progress = flows.map(() => ({ received: 0 }));
    const pings = Promise.all(
      flows.map(([from, to], i) => lab.ping(from, to, count, 1000, 100, progress[i])),
    );
    const answered = (atLeast: readonly number[]) =>
      vi.waitFor(
        () =>
          progress.forEach((p, i) => expect(p.received).toBeGreaterThanOrEqual(atLeast[i] ?? 0)),
        { timeout: 10_000, interval: 20 },
      );
    // every flow is answered before the kill...
    await answered([5, 5, 5, 5]);
    const killed = await agent.proc.kill();
    expect(killed.signal).toBe('SIGKILL');
    // ...and goes on being answered while no agent runs: its CNI socket answers no more, traffic
    // must not care
    await answered(progress.map((p) => p.received + 10));
    agent = await lab.startAgent('n1', agent);
    const results = await pings;
    for (const r of results) expect(r).toEqual({ sent: count, received: count });

    expect((await apiGet(agent.apiSocket, '/v1/endpoints')).body).toEqual(endpointsBefore);
    expect((await apiGet(agent.apiSocket, '/v1/bpf/endpoints')).body).toEqual(bpfBefore);
    expect((await apiGet(agent.apiSocket, '/v1/bpf/ipcache')).body).toEqual(ipcacheBefore);
    const status = (await apiGet(agent.apiSocket, '/v1/status')).body as {
      writes: Record<string, WriteStats>;
      restore: { kept: number; reattached: number; replumbed: number; removed: number };
    };
    expect(status.restore).toMatchObject({ kept: 2, reattached: 0, replumbed: 0, removed: 0 });
    for (const map of ['endpoints', 'ipcache', 'policy'])
      expect(status.writes[map], map).toMatchObject({ syscalls: 0, written: 0, deleted: 0 });
  });

  test('the restored endpoints pass CHECK and DEL cleanly', async () => {
    for (const name of ['pa', 'pb']) {
      const p = pods[name] as Pod;
      const check = await lab.cnitool(agent, 'check', p.netns, { namespace: 'default', name });
      expect(check, check.stderr).toMatchObject({ code: 0 });
      const del = await lab.cnitool(agent, 'del', p.netns, { namespace: 'default', name });
      expect(del, del.stderr).toMatchObject({ code: 0 });
    }
    expect(lab.vethsOf(agent.netns)).toEqual([]);
    expect((await apiGet(agent.apiSocket, '/v1/bpf/endpoints')).body).toEqual([]);
  });

  test('a restart repairs what went missing while it was away and removes what went stale', async () => {
    const names = ['pc', 'pd'];
    const made: Pod[] = [];
    for (const name of names) {
      const netns = lab.addPodNetns(name);
      const r = await lab.cnitool(agent, 'add', netns, { namespace: 'default', name });
      expect(r.code, r.stderr).toBe(0);
      const res = JSON.parse(r.stdout) as { ips: Array<{ address: string; gateway: string }> };
      const ips = res.ips.map((i) => i.address.split('/')[0] ?? '');
      made.push({ netns, v4: ips[0] ?? '', v6: ips[1] ?? '', gw4: res.ips[0]?.gateway ?? '' });
    }
    const [pc, pd] = made as [Pod, Pod];
    const listed = (await apiGet(agent.apiSocket, '/v1/endpoints')).body as Array<{
      pod: { name: string };
      containerId: string;
    }>;
    const pdContainer = listed.find((e) => e.pod.name === 'pd')?.containerId ?? '';
    await agent.proc.kill();
    // while the agent is down: pc's veth is deleted by hand, pd's pod (netns) goes away entirely
    run('ip', ['-n', pc.netns.replace('/run/netns/', ''), 'link', 'del', 'eth0']);
    run('ip', ['netns', 'del', pd.netns.replace('/run/netns/', '')]);
    agent = await lab.startAgent('n1', agent);
    const status = (await apiGet(agent.apiSocket, '/v1/status')).body as {
      restore: { kept: number; replumbed: number; removed: number };
    };
    expect(status.restore).toMatchObject({ replumbed: 1, removed: 1 });
    // pd's addresses go back to IPAM once NATS is up, then pd is gone from the list
    const current = async () =>
      (
        (await apiGet(agent.apiSocket, '/v1/endpoints')).body as Array<{ pod: { name: string } }>
      ).map((e) => e.pod.name);
    await vi.waitFor(async () => expect(await current()).toEqual(['pc']), {
      timeout: 10_000,
      interval: 100,
    });
    expect(lab.ipamHeld('n1', pdContainer)).toBe(false);
    const check = await lab.cnitool(agent, 'check', pc.netns, { namespace: 'default', name: 'pc' });
    expect(check, check.stderr).toMatchObject({ code: 0 });
    expect(await lab.ping(pc.netns, pc.gw4 ?? '', 1)).toEqual({ sent: 1, received: 1 });
  });
});
