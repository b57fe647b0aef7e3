// The IPAM sweep: an allocation that lands in IPAM after the agent gave up on it (a replica that
// stalled past the agent's timeout, writing after the runtime's DEL found nothing to release) is
// released by the node's agent, which knows it has no endpoint for it; addresses of the node's
// real endpoints stay. Real nats-server, a real ipam process and a real agent in a netns.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { AllocateRequest, Allocation, IPAM_KV_BUCKET, IpamSubject } from '@dyad/contracts';
import { heldContainers } from '../src/ipam-sweep.ts';
import { ensureBpfBuilt, ensureCniBuilt } from './helpers/build.ts';
import { kernelRequired, kernelSkipReason } from './helpers/kernel.ts';
import { AgentLab, apiGet } from './helpers/lab.ts';
import type { AgentHandle } from './helpers/lab.ts';

const skip = kernelSkipReason();
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

describe.skipIf(skip !== undefined)('IPAM sweep by the node agent', () => {
  const lab = new AgentLab();
  let agent: AgentHandle;

  beforeAll(async () => {
    ensureBpfBuilt();
    ensureCniBuilt();
    await lab.start();
    await lab.addNode('n1');
    agent = await lab.startAgent('n1', undefined, {
      DYAD_IPAM_SWEEP_INTERVAL_S: '1',
      DYAD_IPAM_SWEEP_GRACE_S: '2',
    });
  });

  afterAll(async () => {
    await lab.cleanup();
  });

  const held = async (): Promise<string[]> =>
    (await heldContainers(await lab.bus.kv(IPAM_KV_BUCKET), 'n1')).map((c) => c.containerId);

  test('a late allocation for a container the node does not have is released; endpoints keep theirs', async () => {
    const netns = lab.addPodNetns('live');
    await lab.publishPod('n1', 'default', 'live');
    const add = await lab.cnitool(agent, 'add', netns, { namespace: 'default', name: 'live' });
    expect(add.code, add.stderr).toBe(0);
    const endpoints = (await apiGet(agent.apiSocket, '/v1/endpoints')).body as Array<{
      containerId: string;
    }>;
    const liveContainer = endpoints[0]?.containerId ?? '';
    expect(liveContainer).not.toBe('');

    // what a stalled replica writes after the agent and the runtime moved on (the pod lives on)
    await lab.publishPod('n1', 'default', 'late');
    await lab.bus.request(
      AllocateRequest,
      IpamSubject.allocate,
      {
        node: 'n1',
        namespace: 'default',
        pod: 'late',
        podUid: 'uid-late',
        containerId: 'late-sandbox',
      },
      Allocation,
      { timeoutMs: 10_000 },
    );
    expect(await held()).toContain('late-sandbox');

    // a hang guard, not a speed limit: the sweep runs every second, after a 2 s grace
    for (let i = 0; i < 600 && (await held()).includes('late-sandbox'); i++)
      await new Promise((r) => setTimeout(r, 100));
    const after = await held();
    expect(after).not.toContain('late-sandbox');
    expect(after).toContain(liveContainer);
    const check = await lab.cnitool(agent, 'check', netns, { namespace: 'default', name: 'live' });
    expect(check.code, check.stderr).toBe(0);
  });
});
