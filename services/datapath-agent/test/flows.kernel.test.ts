// Flow export through the real agent: a policy drop between two pods on one node reaches NATS as
// an io.dyad.flow.v1 event naming both pods, their namespace and labels, in both families; and a
// bounded UDP flood to a denied port neither blocks the agent nor grows its memory past the
// stated bound, while its counters account for every event the datapath produced.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import {
  FlowEvent,
  IdentityEvent,
  NodeDesiredStream,
  PodPolicyDesiredV2,
  PolicyStream,
  RouterIpcacheEvent,
  RouterStream,
  flowFilters,
  nodePolicySubject,
  policyIdentitySubject,
  routerIpcacheSubject,
} from '@dyad/contracts';
import type { AgentStatusValue, DirectionPolicyValue, FlowEventValue } from '@dyad/contracts';
import { Reason } from '@dyad/libbpf-ts';
import { FLOW_QUEUE, FLOW_UNCONFIRMED } from '../src/flows/flows.ts';
import { ensureBpfBuilt, ensureCniBuilt } from './helpers/build.ts';
import { kernelRequired, kernelSkipReason } from './helpers/kernel.ts';
import { AgentHarness, apiGet } from './helpers/harness.ts';
import type { AgentHandle } from './helpers/harness.ts';

const skip = kernelSkipReason();
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

const FLOOD = join(import.meta.dirname, 'helpers', 'flood.ts');
const WAIT = { timeout: 20_000, interval: 100 };
const ID = { pa: 0x10001, pb: 0x10002 } as const;
const DENIED_PORT = 9999;
const FLOOD_PACKETS = 200_000;
/**
 * The agent runs with this old-space limit: V8 aborts the process rather than exceed it, and an
 * agent that stops answering fails the test. Flow export's own bound is FLOW_QUEUE decoded
 * events (~0.5 KiB) and FLOW_UNCONFIRMED encoded flows (~1.2 KiB), under 4 MiB; a queue without
 * bound would hold the flood's backlog of decoded events (~100 MiB) on top of the agent's own
 * heap, which does not fit. (Resident memory is logged, not asserted: how much heap slack V8
 * keeps under this allocation rate varies with the machine's load, 45 to 123 MiB seen.)
 */
const HEAP_LIMIT_MIB = 128;

const OPEN: DirectionPolicyValue = { enforce: false, peers: [], cidrs: { IPv4: [], IPv6: [] } };

interface Pod {
  readonly name: keyof typeof ID;
  readonly netns: string;
  readonly v4: string;
  readonly v6: string;
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

describe.skipIf(skip !== undefined)('flows from the real agent', () => {
  const lab = new AgentHarness();
  let agent: AgentHandle;
  const pods = {} as Record<keyof typeof ID, Pod>;
  const flows: FlowEventValue[] = [];

  const status = async () => (await apiGet(agent.apiSocket, '/v1/status')).body as AgentStatusValue;
  const policyDrops = async () => {
    const m = (await apiGet(agent.apiSocket, '/v1/bpf/metrics')).body as Array<{
      reason: number;
      packets: number;
    }>;
    return m.filter((e) => e.reason === Reason.DROP_POLICY).reduce((a, e) => a + e.packets, 0);
  };

  beforeAll(async () => {
    ensureBpfBuilt();
    ensureCniBuilt();
    await lab.start();
    await lab.bus.ensureStreams([RouterStream, NodeDesiredStream, PolicyStream]);
    await lab.addNode('n1');
    agent = await lab.startAgent('n1', undefined, {
      LOG_LEVEL: 'info',
      NODE_OPTIONS: `--max-old-space-size=${HEAP_LIMIT_MIB}`,
    });
    for (const name of ['pa', 'pb'] as const) {
      const netns = lab.addPodNetns(name);
      const r = await lab.cnitool(agent, 'add', netns, { namespace: 'shop', name });
      if (r.code !== 0) throw new Error(`ADD ${name}: ${r.stdout}${r.stderr}`);
      const ips = (JSON.parse(r.stdout) as { ips: Array<{ address: string }> }).ips.map(
        (i) => i.address.split('/')[0] ?? '',
      );
      pods[name] = {
        name,
        netns,
        v4: ips.find((a) => a.includes('.')) ?? '',
        v6: ips.find((a) => a.includes(':')) ?? '',
      };
    }
    let revision = 0;
    for (const p of Object.values(pods)) {
      await lab.bus.jsPublish(IdentityEvent, policyIdentitySubject(ID[p.name]), {
        op: 'upsert',
        identity: ID[p.name],
        labels: [`dyad:namespace=shop`, `k8s:app=${p.name}`],
      });
      for (const prefix of [`${p.v4}/32`, `${p.v6}/128`])
        await lab.bus.jsPublish(RouterIpcacheEvent, routerIpcacheSubject('n1', prefix), {
          op: 'upsert',
          node: 'n1',
          revision: ++revision,
          entry: {
            prefix,
            identity: ID[p.name],
            kind: 'pod',
            hostNode: 'n1',
            local: true,
            pod: { namespace: 'shop', name: p.name },
          },
        });
    }
    // pb admits nothing
    await lab.bus.jsPublish(PodPolicyDesiredV2, nodePolicySubject('n1', 'shop', 'pb'), {
      op: 'upsert',
      namespace: 'shop',
      name: 'pb',
      uid: 'uid-pb',
      identity: ID.pb,
      policies: ['deny-all'],
      ingress: { ...OPEN, enforce: true },
      egress: OPEN,
    });
    // the first filter (source namespace shop) is enough: both pods are in it
    const [filter] = flowFilters({ namespace: 'shop', verdict: 'DROPPED' });
    if (filter === undefined) throw new Error('no flow filter');
    lab.bus.subscribe([FlowEvent], filter, (d) => {
      if (flows.length < 1000) flows.push(d.value);
    });
    await lab.bus.flush();
    // enforced once a packet to pb is dropped
    await vi.waitFor(async () => {
      await lab.nsExec(pods.pa.netns, [
        process.execPath,
        FLOOD,
        pods.pb.v4,
        String(DENIED_PORT),
        '1',
      ]);
      expect(await policyDrops()).toBeGreaterThan(0);
    }, WAIT);
  });

  afterAll(async () => {
    await lab.cleanup();
  });

  test.each([
    ['IPv4', 'v4'],
    ['IPv6', 'v6'],
  ] as const)(
    '%s: a policy drop is a flow naming both pods, their namespace and labels',
    async (family, key) => {
      const { pa, pb } = pods;
      const r = await lab.nsExec(pa.netns, [
        process.execPath,
        FLOOD,
        pb[key],
        String(DENIED_PORT),
        '1',
      ]);
      expect(r.code, r.stderr).toBe(0);
      await vi.waitFor(() => {
        const f = flows.find((x) => x.IP.destination === pb[key] && x.IP.source === pa[key]);
        expect(f).toMatchObject({
          node_name: 'n1',
          verdict: 'DROPPED',
          drop_reason_desc: 'POLICY_DENIED',
          policy_verdict: 'DENIED',
          traffic_direction: 'INGRESS',
          IP: { ipVersion: family },
          l4: { UDP: { destination_port: DENIED_PORT } },
          source: {
            identity: ID.pa,
            namespace: 'shop',
            pod_name: 'pa',
            labels: ['dyad:namespace=shop', 'k8s:app=pa'],
          },
          destination: {
            identity: ID.pb,
            namespace: 'shop',
            pod_name: 'pb',
            labels: ['dyad:namespace=shop', 'k8s:app=pb'],
          },
          is_reply: false,
        });
      }, WAIT);
    },
  );

  test(`a flood of ${FLOOD_PACKETS} denied datagrams: the agent keeps answering, stays within its memory bound, and accounts for every event`, async () => {
    const pid = agent.proc.pid ?? 0;
    const before = rssBytes(pid);
    let peak = before;
    let answered = 0;
    const flood = lab.nsExec(
      pods.pa.netns,
      [process.execPath, FLOOD, pods.pb.v4, String(DENIED_PORT), String(FLOOD_PACKETS)],
      300_000,
    );
    // set by a callback: declared boolean so TypeScript does not take the loop's test for constant
    let done = false as boolean;
    void flood.finally(() => (done = true));
    while (!done) {
      // the API is served on the same event loop that drains the ring buffer
      const s = await status();
      expect(s.flows).toBeDefined();
      answered++;
      peak = Math.max(peak, rssBytes(pid));
    }
    const r = await flood;
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { sent: number }).sent).toBe(FLOOD_PACKETS);
    expect(answered).toBeGreaterThan(0);
    // every event the datapath produced is published, dropped by the agent and counted, or
    // counted by the datapath as lost for want of room in the ring buffer: none unaccounted
    await vi.waitFor(async () => {
      const produced = await policyDrops();
      const f = (await status()).flows;
      expect(f).toBeDefined();
      if (!f) return;
      expect(f.published + f.droppedQueue + f.droppedUnsent + f.ringLost).toBe(produced);
      expect(f.received + f.droppedQueue + f.ringLost).toBe(produced);
    }, WAIT);
    const f = (await status()).flows;
    peak = Math.max(peak, rssBytes(pid));
    console.log(
      JSON.stringify({
        flows: f,
        rssBeforeMiB: before / 2 ** 20,
        rssPeakMiB: peak / 2 ** 20,
        answered,
        bound: { FLOW_QUEUE, FLOW_UNCONFIRMED },
      }),
    );
    expect(f?.published).toBeGreaterThan(0);
    // still the same process: it never hit its heap limit
    expect(agent.proc.running, agent.proc.exitInfo ? JSON.stringify(agent.proc.exitInfo) : '').toBe(
      true,
    );
  });
});
