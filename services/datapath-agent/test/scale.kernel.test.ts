// 2,000 pod ADDs spread over 10 nodes, all in flight together: each node's agent allocates from
// its own blocks with nobody to ask, so the one thing that must hold is that no address is ever
// given twice, cluster-wide, in either family.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ensureBpfBuilt, ensureCniBuilt } from './helpers/build.ts';
import { kernelRequired, kernelSkipReason } from './helpers/kernel.ts';
import { AgentHarness } from './helpers/harness.ts';
import type { AgentHandle } from './helpers/harness.ts';

const skip = kernelSkipReason();
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

const NODES = 10;
const PODS = 2000;

describe.skipIf(skip !== undefined)('2,000 concurrent ADDs on 10 nodes', () => {
  const lab = new AgentHarness();
  const agents: AgentHandle[] = [];

  beforeAll(async () => {
    ensureBpfBuilt();
    ensureCniBuilt();
    await lab.start();
    for (let n = 0; n < NODES; n++) await lab.addNode(`m${n}`);
    agents.push(
      ...(await Promise.all(Array.from({ length: NODES }, (_, n) => lab.startAgent(`m${n}`)))),
    );
  });

  afterAll(async () => {
    await lab.cleanup();
  });

  test('every address is distinct, per family, and every node allocated from its own blocks', async () => {
    const pods = Array.from({ length: PODS }, (_, i) => ({
      id: `s${i}`,
      agent: agents[i % NODES] as AgentHandle,
      netns: lab.addPodNetns(`s${i}`),
    }));
    const got = new Map<string, { node: string; v4: string; v6: string }>();
    let next = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < pods.length) {
          const p = pods[next++];
          if (!p) break;
          const r = await lab.dyadCni(
            {
              CNI_COMMAND: 'ADD',
              CNI_CONTAINERID: p.id,
              CNI_NETNS: p.netns,
              CNI_IFNAME: 'eth0',
              CNI_ARGS: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${p.id};K8S_POD_UID=uid-${p.id}`,
              CNI_PATH: '/nonexistent',
            },
            JSON.stringify({
              cniVersion: '1.1.0',
              name: p.agent.network,
              type: 'dyad-cni',
              agentSocket: p.agent.cniSocket,
            }),
          );
          expect(r.code, `${p.id}: ${r.stdout}`).toBe(0);
          const ips = (JSON.parse(r.stdout) as { ips: Array<{ address: string }> }).ips.map(
            (x) => x.address.split('/')[0] ?? '',
          );
          const v4 = ips.find((a) => !a.includes(':'));
          const v6 = ips.find((a) => a.includes(':'));
          expect(v4 && v6, p.id).toBeTruthy();
          got.set(p.id, { node: p.agent.node, v4: v4 ?? '', v6: v6 ?? '' });
        }
      }),
    );
    expect(got.size).toBe(PODS);
    for (const fam of ['v4', 'v6'] as const) {
      const all = [...got.values()].map((g) => g[fam]);
      expect(new Set(all).size, `${fam} addresses given twice`).toBe(PODS);
    }
    // each node's pods share its /24 (IPv4) and /120 (IPv6) block, and no two nodes share one
    const blockOf = (g: { v4: string }) => g.v4.split('.').slice(0, 3).join('.');
    const nodesOfBlock = new Map<string, Set<string>>();
    for (const g of got.values())
      nodesOfBlock.set(blockOf(g), (nodesOfBlock.get(blockOf(g)) ?? new Set()).add(g.node));
    expect(nodesOfBlock.size).toBe(NODES);
    for (const nodes of nodesOfBlock.values()) expect(nodes.size).toBe(1);
  });
});
