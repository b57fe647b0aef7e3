// Single-family networks, and every bad input of the issue: the documented CNI code comes back
// and a leak check proves nothing was left (no veth, no map entry, no address held in IPAM).
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { ensureBpfBuilt, ensureCniBuilt } from './helpers/build.ts';
import { kernelRequired, kernelSkipReason } from './helpers/kernel.ts';
import { AgentHarness, apiGet, run } from './helpers/harness.ts';
import type { AgentHandle } from './helpers/harness.ts';

const skip = kernelSkipReason();
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

interface CniError {
  cniVersion: string;
  code: number;
  msg: string;
  details: string;
}

describe.skipIf(skip !== undefined)('single-family networks and bad input', () => {
  const lab = new AgentHarness();
  let agent: AgentHandle;
  let nets: Record<'v4' | 'v6', { confDir: string; network: string }>;

  beforeAll(async () => {
    ensureBpfBuilt();
    ensureCniBuilt();
    await lab.start();
    await lab.addNode('n1');
    agent = await lab.startAgent('n1');
    nets = {
      v4: { confDir: join(agent.dir, 'net-v4'), network: `${lab.prefix}-v4` },
      v6: { confDir: join(agent.dir, 'net-v6'), network: `${lab.prefix}-v6` },
    };
    lab.writeConflist(nets.v4.confDir, nets.v4.network, agent.cniSocket, { ipFamilies: ['IPv4'] });
    lab.writeConflist(nets.v6.confDir, nets.v6.network, agent.cniSocket, { ipFamilies: ['IPv6'] });
  });

  afterAll(async () => {
    await lab.cleanup();
  });

  /** Nothing of the pod is anywhere: node veths, map entries, agent endpoints. */
  async function assertNoLeak(expectedEndpoints: number): Promise<void> {
    expect(lab.vethsOf(agent.netns)).toHaveLength(expectedEndpoints);
    const eps = (await apiGet(agent.apiSocket, '/v1/endpoints')).body as unknown[];
    expect(eps).toHaveLength(expectedEndpoints);
    const bpf = (await apiGet(agent.apiSocket, '/v1/bpf/endpoints')).body as unknown[];
    expect(bpf.length).toBeLessThanOrEqual(expectedEndpoints * 2);
  }

  test.each([
    ['v4', 'IPv4', /^198\./],
    ['v6', 'IPv6', /^fd00:/],
  ] as const)('an %s-only network gives a single-family result and pod', async (which, fam, re) => {
    const netns = lab.addPodNetns(`s${which}`);
    const pod = { namespace: 'default', name: `s${which}` };
    const r = await lab.cnitool(nets[which], 'add', netns, pod);
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout) as {
      ips: Array<{ address: string }>;
      routes: Array<{ dst: string }>;
    };
    expect(res.ips).toHaveLength(1);
    expect(res.ips[0]?.address).toMatch(re);
    expect(res.routes.map((x) => x.dst)).toEqual([fam === 'IPv4' ? '0.0.0.0/0' : '::/0']);
    const addrs = JSON.parse(
      run('ip', ['-n', netns.replace('/run/netns/', ''), '-j', 'addr', 'show', 'dev', 'eth0']),
    ) as Array<{
      addr_info: Array<{ family: string; scope: string }>;
    }>;
    const global = (addrs[0]?.addr_info ?? []).filter((a) => a.scope === 'global');
    expect(global.map((a) => a.family)).toEqual([fam === 'IPv4' ? 'inet' : 'inet6']);
    expect((await lab.cnitool(nets[which], 'check', netns, pod)).code).toBe(0);
    expect((await lab.cnitool(nets[which], 'del', netns, pod)).code).toBe(0);
    await assertNoLeak(0);
  });

  const baseEnv = (netns: string, containerId: string, pod: string) => ({
    CNI_COMMAND: 'ADD',
    CNI_CONTAINERID: containerId,
    CNI_NETNS: netns,
    CNI_IFNAME: 'eth0',
    CNI_ARGS: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod};K8S_POD_UID=uid-${pod}`,
    CNI_PATH: '/nonexistent',
  });
  const conf = (extra: Record<string, unknown> = {}) =>
    JSON.stringify({
      cniVersion: '1.1.0',
      name: agent.network,
      type: 'dyad-cni',
      agentSocket: agent.cniSocket,
      ...extra,
    });

  test.each([
    [
      'malformed stdin JSON',
      6,
      // dyad-cni finds the socket in the members it could read before the break
      (n: string) => ({
        env: baseEnv(n, 'bad1', 'b1'),
        stdin: `{"agentSocket":${JSON.stringify(agent.cniSocket)},"cniVersion":"1.1.0","name":`,
      }),
    ],
    [
      'an unknown cniVersion',
      1,
      (n: string) => ({ env: baseEnv(n, 'bad2', 'b2'), stdin: conf({ cniVersion: '7.0.0' }) }),
    ],
    [
      'a missing CNI_NETNS',
      4,
      (n: string) => ({ env: { ...baseEnv(n, 'bad3', 'b3'), CNI_NETNS: '' }, stdin: conf() }),
    ],
    [
      'a netns path that does not exist',
      4,
      () => ({ env: baseEnv('/run/netns/does-not-exist-dyad', 'bad4', 'b4'), stdin: conf() }),
    ],
    [
      'a netns path that is no namespace',
      4,
      () => ({ env: baseEnv('/etc/hostname', 'bad5', 'b5'), stdin: conf() }),
    ],
    [
      'an ipam section',
      2,
      (n: string) => ({
        env: baseEnv(n, 'bad6', 'b6'),
        stdin: conf({ ipam: { type: 'host-local' } }),
      }),
    ],
  ] as const)('%s is code %i and leaves nothing', async (_what, code, make) => {
    const netns = lab.addPodNetns(`bad${code}${Math.random().toString(16).slice(2, 6)}`);
    const { env, stdin } = make(netns);
    const r = await lab.dyadCni(env, stdin);
    expect(r.code).not.toBe(0);
    const err = JSON.parse(r.stdout) as CniError;
    expect(err.code).toBe(code);
    expect(err.msg.length).toBeGreaterThan(0);
    expect(err.details.length).toBeGreaterThan(0);
    await assertNoLeak(0);
    expect(run('ip', ['-n', netns.replace('/run/netns/', ''), '-br', 'link'])).not.toContain(
      'eth0',
    );
    expect(lab.ipamHeld('n1', env.CNI_CONTAINERID)).toBe(false);
  });

  test('a container id reused for another pod is code 4; the first pod keeps its endpoint and addresses', async () => {
    const first = lab.addPodNetns('reuse1');
    const second = lab.addPodNetns('reuse2');
    const ok = await lab.dyadCni(baseEnv(first, 'shared-id', 'reuse1'), conf());
    expect(ok.code, ok.stdout).toBe(0);
    const r = await lab.dyadCni(baseEnv(second, 'shared-id', 'reuse2'), conf());
    const err = JSON.parse(r.stdout) as CniError;
    expect(err.code).toBe(4);
    expect(err.details).toContain('default/reuse1');
    expect(run('ip', ['-n', second.replace('/run/netns/', ''), '-br', 'link'])).not.toContain(
      'eth0',
    );
    await assertNoLeak(1);
    const gateway = (JSON.parse(ok.stdout) as { routes: { gw: string }[] }).routes[0]?.gw ?? '';
    expect(await lab.ping(first, gateway, 1)).toEqual({
      sent: 1,
      received: 1,
    });
    const del = await lab.dyadCni(
      { ...baseEnv(first, 'shared-id', 'reuse1'), CNI_COMMAND: 'DEL' },
      conf(),
    );
    expect(del.code, del.stdout).toBe(0);
    await assertNoLeak(0);
    expect(lab.ipamHeld('n1', 'shared-id')).toBe(false);
  });

  test('a container id reused with another netns is code 4; the first attachment is untouched', async () => {
    const first = lab.addPodNetns('netns1');
    const second = lab.addPodNetns('netns2');
    const ok = await lab.dyadCni(baseEnv(first, 'same-id', 'samepod'), conf());
    expect(ok.code, ok.stdout).toBe(0);
    const r = await lab.dyadCni(baseEnv(second, 'same-id', 'samepod'), conf());
    const err = JSON.parse(r.stdout) as CniError;
    expect(err.code).toBe(4);
    expect(err.details).toContain(first);
    expect(run('ip', ['-n', second.replace('/run/netns/', ''), '-br', 'link'])).not.toContain(
      'eth0',
    );
    await assertNoLeak(1);
    const del = await lab.dyadCni(
      { ...baseEnv(first, 'same-id', 'samepod'), CNI_COMMAND: 'DEL' },
      conf(),
    );
    expect(del.code, del.stdout).toBe(0);
    await assertNoLeak(0);
    expect(lab.ipamHeld('n1', 'same-id')).toBe(false);
  });

  test('an interface name already in the netns is code 101 and allocates nothing', async () => {
    const netns = lab.addPodNetns('taken');
    run('ip', [
      '-n',
      netns.replace('/run/netns/', ''),
      'link',
      'add',
      'eth0',
      'type',
      'veth',
      'peer',
      'name',
      'x0',
    ]);
    const r = await lab.dyadCni(baseEnv(netns, 'taken1', 'taken'), conf());
    expect((JSON.parse(r.stdout) as CniError).code).toBe(101);
    await assertNoLeak(0);
    expect(lab.ipamHeld('n1', 'taken1')).toBe(false);
  });

  test('CHECK of an unknown container is code 3; DEL of one it never saw succeeds', async () => {
    const netns = lab.addPodNetns('ghost');
    const check = await lab.dyadCni(
      { ...baseEnv(netns, 'ghost1', 'ghost'), CNI_COMMAND: 'CHECK' },
      conf(),
    );
    expect((JSON.parse(check.stdout) as CniError).code).toBe(3);
    const del = await lab.dyadCni(
      { ...baseEnv(netns, 'ghost1', 'ghost'), CNI_COMMAND: 'DEL' },
      conf(),
    );
    expect(del).toMatchObject({ code: 0, stdout: '' });
  });

  test('with ipam gone, ADD and DEL still work: the node allocates from its own blocks', async () => {
    const netns = lab.addPodNetns('noipam');
    await lab.stopIpam();
    try {
      const r = await lab.dyadCni(baseEnv(netns, 'noipam1', 'noipam'), conf());
      expect(r.code, r.stdout).toBe(0);
      expect(lab.ipamHeld('n1', 'noipam1')).toBe(true);
      const del = await lab.dyadCni(
        { ...baseEnv(netns, 'noipam1', 'noipam'), CNI_COMMAND: 'DEL' },
        conf(),
      );
      expect(del.code, del.stdout).toBe(0);
      await assertNoLeak(0);
    } finally {
      await lab.startIpam('ipam-again');
    }
    expect(lab.ipamHeld('n1', 'noipam1')).toBe(false);
  });

  test('ADD on a node ipam has given no block yet is code 11 naming why; STATUS is 50', async () => {
    await lab.addNode('n9', false);
    const bare = await lab.startAgent('n9', undefined, {}, false);
    const netns = lab.addPodNetns('noblock');
    const c = conf({ agentSocket: bare.cniSocket });
    const r = await lab.dyadCni(baseEnv(netns, 'noblock1', 'noblock'), c);
    const err = JSON.parse(r.stdout) as CniError;
    expect(err.code).toBe(11);
    expect(err.details).toMatch(/no pod CIDR/);
    expect(run('ip', ['-n', netns.replace('/run/netns/', ''), '-br', 'link'])).not.toContain(
      'eth0',
    );
    const st = await lab.dyadCni(
      { ...baseEnv(netns, 'noblock1', 'noblock'), CNI_COMMAND: 'STATUS' },
      c,
    );
    expect((JSON.parse(st.stdout) as CniError).code).toBe(50);
    // once ipam assigns the node its blocks, the same ADD succeeds
    await lab.announceNode('n9');
    await vi.waitFor(
      async () => {
        const s = (await apiGet(bare.apiSocket, '/v1/status')).body as { ready: boolean };
        expect(s.ready).toBe(true);
      },
      { timeout: 60_000, interval: 100 },
    );
    const ok = await lab.dyadCni(baseEnv(netns, 'noblock1', 'noblock'), c);
    expect(ok.code, ok.stdout).toBe(0);
  });

  test('an agent that is not there is code 11 from dyad-cni itself', async () => {
    const netns = lab.addPodNetns('noagent');
    const r = await lab.dyadCni(
      baseEnv(netns, 'noagent1', 'noagent'),
      conf({ agentSocket: join(agent.dir, 'nobody.sock') }),
    );
    expect(JSON.parse(r.stdout)).toMatchObject({ code: 11, msg: 'dyad agent unreachable' });
  });
});
