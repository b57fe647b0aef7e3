// A start on a big cluster: the router's ipcache for the node is read as a snapshot and applied
// entry by entry into compact state, never held whole as decoded deliveries (issue #20). The
// agent starts with V8's old generation bounded below what holding the snapshot whole costs:
// an agent that collects it first runs out of heap and dies; one that applies it as it reads
// holds every entry in its maps and keeps serving. No timing is measured.
import {
  NodeDesiredStream,
  RouterIpcacheEvent,
  RouterStream,
  routerIpcacheSubject,
} from '@dyad/contracts';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ensureBpfBuilt, ensureCniBuilt } from './helpers/build.ts';
import { kernelRequired, kernelSkipReason } from './helpers/kernel.ts';
import { AgentHarness, apiGet } from './helpers/harness.ts';

const skip = kernelSkipReason();
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

const PODS = Number(process.env['DYAD_TEST_SNAPSHOT_PODS'] ?? 20_000);
const HEAP_MIB = Number(process.env['DYAD_TEST_SNAPSHOT_HEAP_MIB'] ?? 64);

describe.skipIf(skip !== undefined)('a start with a cluster-sized snapshot', () => {
  const lab = new AgentHarness();

  beforeAll(async () => {
    ensureBpfBuilt();
    ensureCniBuilt();
    await lab.start();
    await lab.bus.ensureStreams([RouterStream, NodeDesiredStream]);
    await lab.addNode('n1');
  });

  afterAll(async () => {
    await lab.cleanup();
  });

  test(`${PODS} remote dual-stack pods in NATS: the agent applies them under a ${HEAP_MIB} MiB heap`, async () => {
    // one /32 and one /128 per pod, 200 pods to a hosting node
    let revision = 0;
    const jobs: Array<() => Promise<unknown>> = [];
    for (let i = 0; i < PODS; i++) {
      const host = Math.floor(i / 200);
      const pod = { namespace: `ns-${host % 50}`, name: `pod-${i}` };
      for (const prefix of [
        `198.19.${i >> 8}.${i & 255}/32`,
        `fd00:19::${host.toString(16)}:${(i % 200).toString(16)}/128`,
      ])
        jobs.push(() =>
          lab.bus.jsPublish(RouterIpcacheEvent, routerIpcacheSubject('n1', prefix), {
            op: 'upsert',
            node: 'n1',
            revision: ++revision,
            entry: {
              prefix,
              identity: 0x10000 + (i % 1000),
              kind: 'pod',
              hostNode: `h${host}`,
              hostAddress: prefix.includes(':')
                ? `fd00:19:ffff::${host.toString(16)}`
                : `198.18.200.${host % 250}`,
              local: false,
              pod,
            },
          }),
        );
    }
    for (let i = 0; i < jobs.length; i += 256)
      await Promise.all(jobs.slice(i, i + 256).map((j) => j()));

    const agent = await lab.startAgent('n1', undefined, {
      NODE_OPTIONS: `--max-old-space-size=${HEAP_MIB}`,
    });
    // its own word that it applied the snapshot (after the maps' flush); /v1/status is not
    // polled meanwhile: it compares every map with the desired state, a load of its own
    const applied = (): number => {
      const m = [
        ...readFileSync(join(agent.dir, 'agent.log'), 'utf8').matchAll(
          /"routerEntries":(\d+).*"msg":"desired state applied"/g,
        ),
      ].at(-1);
      return m === undefined ? -1 : Number(m[1]);
    };
    const deadline = Date.now() + 300_000;
    while (agent.proc.running && applied() < 2 * PODS && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 200));
    expect(agent.proc.running, `agent: ${agent.proc.describeExit()}`).toBe(true);
    expect(applied()).toBe(2 * PODS);
    const status = (await apiGet(agent.apiSocket, '/v1/status')).body as {
      ready: boolean;
      maps: Array<{ name: string; entries: number }>;
    };
    expect(status.ready).toBe(true);
    expect(status.maps.find((m) => m.name === 'dy_ipcache')?.entries).toBe(2 * PODS);
  });
});
