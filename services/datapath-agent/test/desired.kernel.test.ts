// Desired state comes only from NATS: the router's ipcache entries for this node reach the
// datapath, and a burst of 1,000 router updates is written in a few batch syscalls. (Pod
// policies from NATS: policy.kernel.test.ts.)
import {
  NodeDesiredStream,
  RouterIpcacheEvent,
  RouterStream,
  routerIpcacheSubject,
} from '@dyad/contracts';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ensureBpfBuilt, ensureCniBuilt } from './helpers/build.ts';
import { kernelRequired, kernelSkipReason } from './helpers/kernel.ts';
import { AgentHarness, apiGet } from './helpers/harness.ts';
import type { AgentHandle } from './helpers/harness.ts';

const skip = kernelSkipReason();
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

interface Pod {
  netns: string;
  v4: string;
  v6: string;
}
interface WriteStats {
  syscalls: number;
  written: number;
  deleted: number;
}

async function until<T>(f: () => Promise<T>, ok: (v: T) => boolean, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(skip !== undefined)('desired state from NATS', () => {
  const lab = new AgentHarness();
  let agent: AgentHandle;
  const pods: Record<string, Pod> = {};
  let revision = 0;

  const ipcache = async () =>
    (await apiGet(agent.apiSocket, '/v1/bpf/ipcache')).body as Array<{
      prefix: string;
      identity: number;
      nodeAddress?: string;
    }>;
  const writes = async () =>
    ((await apiGet(agent.apiSocket, '/v1/status')).body as { writes: Record<string, WriteStats> })
      .writes;

  beforeAll(async () => {
    ensureBpfBuilt();
    ensureCniBuilt();
    await lab.start();
    await lab.bus.ensureStreams([RouterStream, NodeDesiredStream]);
    await lab.addNode('n1');
    // A wide coalescing window, so that how many flushes a burst takes does not depend on how
    // fast a loaded machine delivers it: what is measured is that a flush is a few batch
    // syscalls, not one per entry.
    agent = await lab.startAgent('n1', undefined, {
      DYAD_COALESCE_MS: '1000',
      DYAD_COALESCE_MAX_MS: '10000',
    });
    for (const name of ['pa', 'pb']) {
      const netns = lab.addPodNetns(name);
      const r = await lab.cnitool(agent, 'add', netns, { namespace: 'default', name });
      if (r.code !== 0) throw new Error(`ADD ${name}: ${r.stdout}${r.stderr}`);
      const ips = (JSON.parse(r.stdout) as { ips: Array<{ address: string }> }).ips.map(
        (i) => i.address.split('/')[0] ?? '',
      );
      pods[name] = { netns, v4: ips[0] ?? '', v6: ips[1] ?? '' };
    }
  });

  afterAll(async () => {
    await lab.cleanup();
  });

  test('a burst of 1,000 router ipcache entries lands in a few batch syscalls', async () => {
    const before = await writes();
    const N = 1000;
    const entry = (i: number) => ({
      prefix:
        i % 2 === 0
          ? `198.19.${(i >> 9) & 255}.${(i >> 1) & 255}/32`
          : `fd00:19::${i.toString(16)}/128`,
      identity: 0x10000 + i,
      kind: 'pod' as const,
      hostNode: 'n2',
      hostAddress: i % 2 === 0 ? '198.19.255.2' : 'fd00:19:ffff::2',
      local: false,
    });
    await Promise.all(
      Array.from({ length: N }, (_, i) =>
        lab.bus.jsPublish(RouterIpcacheEvent, routerIpcacheSubject('n1', entry(i).prefix), {
          op: 'upsert',
          node: 'n1',
          revision: ++revision,
          entry: entry(i),
        }),
      ),
    );
    const all = await until(ipcache, (x) => x.length >= N + 4);
    expect(all.length).toBe(N + 4); // plus the two local pods' /32 and /128
    const after = await writes();
    const ipc = {
      syscalls: (after.ipcache?.syscalls ?? 0) - (before.ipcache?.syscalls ?? 0),
      written: (after.ipcache?.written ?? 0) - (before.ipcache?.written ?? 0),
    };
    expect(ipc.written).toBe(N);
    expect(ipc.syscalls).toBeLessThanOrEqual(10);
    expect(all.find((e) => e.prefix === 'fd00:19::1/128')).toMatchObject({
      identity: 0x10001,
      nodeAddress: 'fd00:19:ffff::2',
    });
  });

  test('router entries removed are removed from the ipcache', async () => {
    await lab.bus.jsPublish(RouterIpcacheEvent, routerIpcacheSubject('n1', 'fd00:19::1/128'), {
      op: 'delete',
      node: 'n1',
      revision: ++revision,
      prefix: 'fd00:19::1/128',
    });
    const all = await until(ipcache, (x) => !x.some((e) => e.prefix === 'fd00:19::1/128'));
    expect(all.some((e) => e.prefix === 'fd00:19::1/128')).toBe(false);
  });

  test('the agent reports no drift once the maps hold the desired state (status.drift)', async () => {
    const drift = async () =>
      ((await apiGet(agent.apiSocket, '/v1/status')).body as { drift?: Record<string, number> })
        .drift;
    const d = await until(drift, (x) => x !== undefined && Object.values(x).every((n) => n === 0));
    expect(d).toEqual({ endpoints: 0, ipcache: 0, policy: 0, policyCidr: 0 });
  });

  test("the router's identity for a local pod becomes the endpoint's identity", async () => {
    const a = pods['pa'] as Pod;
    for (const prefix of [`${a.v4}/32`, `${a.v6}/128`])
      await lab.bus.jsPublish(RouterIpcacheEvent, routerIpcacheSubject('n1', prefix), {
        op: 'upsert',
        node: 'n1',
        revision: ++revision,
        entry: {
          prefix,
          identity: 70_001,
          kind: 'pod',
          hostNode: 'n1',
          local: true,
          pod: { namespace: 'default', name: 'pa' },
        },
      });
    const eps = await until(
      async () =>
        (await apiGet(agent.apiSocket, '/v1/bpf/endpoints')).body as Array<{
          address: string;
          identity: number;
        }>,
      (x) => x.filter((e) => e.identity === 70_001).length === 2,
    );
    expect(
      eps
        .filter((e) => e.identity === 70_001)
        .map((e) => e.address)
        .sort(),
    ).toEqual([a.v4, a.v6].sort());
    const listed = (await apiGet(agent.apiSocket, '/v1/endpoints')).body as Array<{
      pod: { name: string };
      identity: number;
    }>;
    expect(listed.find((e) => e.pod.name === 'pa')?.identity).toBe(70_001);
  });
});
