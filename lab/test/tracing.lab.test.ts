// `lab up --tracing`: one Pod creation is one trace in Jaeger, from kube-bridge's watch event to
// the agent's map writes, and the services' log lines carry its trace id.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, test, vi } from 'vitest';
import { labStatusReport } from '../src/commands.ts';
import { fetchTrace, findTraces } from '../src/jaeger.ts';
import type { JaegerSpan } from '../src/jaeger.ts';
import { TestLab, labRequired, labSkipReason, podManifest } from './helpers.ts';

const skip = labSkipReason();
if (skip && labRequired()) test('lab tier is required', () => expect.fail(skip));

async function waitFor<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
  const until = Date.now() + 120_000;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`${what} not seen in time (${String(last)})`);
    await sleep(250);
  }
}

describe.skipIf(skip !== undefined)('lab: tracing', () => {
  const lab = new TestLab('tracing');
  let queryUrl = '';
  let uid = '';

  beforeAll(async () => {
    // debug: the agent logs each ADD inside the call's span
    process.env.DYAD_LAB_LOG_LEVEL = 'debug';
    await lab.up(['--nodes', '2', '--tracing']);
    lab.kubectl(['create', 'namespace', 'traced']);
    lab.kubectl(
      ['apply', '-f', '-'],
      podManifest([{ namespace: 'traced', name: 'web', node: 'node-2' }], 8080),
    );
    await lab.waitPods(['traced/web'], lab.state().families.length);
    uid = lab.kubectl(['get', 'pod', '-n', 'traced', 'web', '-o', 'jsonpath={.metadata.uid}']);
  }, 600_000);

  afterAll(async () => {
    delete process.env.DYAD_LAB_LOG_LEVEL;
    await lab.down();
  }, 120_000);

  it("names Jaeger's query URL in `lab status -o json`", async () => {
    const report = labStatusReport(lab.paths);
    queryUrl = report.state?.jaeger?.queryUrl ?? '';
    expect(queryUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const services = (await (await fetch(`${queryUrl}/api/services`)).json()) as {
      data: string[];
    };
    expect(services.data).toEqual(
      expect.arrayContaining(['kube-bridge', 'router', 'policy', 'datapath-agent']),
    );
  });

  it("one trace holds the pod's path through kube-bridge, the agent, router and policy, in order", async () => {
    const [traceId] = await waitFor('the CNI ADD trace of the pod', async () => {
      const ids = await findTraces(queryUrl, 'datapath-agent', 'cni ADD', {
        'k8s.pod.uid': uid,
      });
      return ids.length > 0 ? ids : undefined;
    });
    expect(traceId).toBeDefined();
    // Spans arrive at Jaeger in batches from six processes: check until the whole chain is there.
    await vi.waitFor(
      async () => {
        const spans = await fetchTrace(queryUrl, traceId ?? '');
        const byId = new Map(spans.map((s) => [s.spanId, s]));
        const ancestors = (s: JaegerSpan): string[] => {
          const out: string[] = [];
          for (let p = byId.get(s.parentSpanId ?? ''); p; p = byId.get(p.parentSpanId ?? ''))
            out.push(p.spanId);
          return out;
        };
        const of = (service: string, name: string, under?: JaegerSpan): JaegerSpan => {
          const s = spans.find(
            (x) =>
              x.service === service &&
              x.name === name &&
              (under === undefined || ancestors(x).includes(under.spanId)),
          );
          if (s === undefined)
            throw new Error(`no ${service} ${name}${under ? ` under ${under.name}` : ''} yet`);
          return s;
        };
        // correctly parented: each step descends from the one that caused it
        const bridge = of('kube-bridge', 'k8s upsert Pod');
        expect(bridge.parentSpanId).toBeUndefined();
        const cni = of('datapath-agent', 'cni ADD', bridge);
        expect(cni.process['k8s.node.name']).toBe('node-2');
        expect(of('datapath-agent', 'ipam allocate', cni).parentSpanId).toBe(cni.spanId);
        // the pod's node writes its maps inside the call
        const ownWrite = of('datapath-agent', 'datapath write', cni);
        expect(ownWrite.process['k8s.node.name']).toBe('node-2');
        // the router's computation of the pod's endpoint report, and the batched map write it
        // causes on the node that learns where the pod is
        const router = of('router', 'router flush', cni);
        const write = of('datapath-agent', 'datapath write', router);
        expect(write.process['k8s.node.name']).toBe('node-1');
        const policy = of('policy', 'policy compile', bridge);
        // in order
        const order = [bridge, cni, ownWrite, router, write].map((s) => s.startTime);
        expect([...order].sort((x, y) => x - y)).toEqual(order);
        expect(policy.startTime).toBeGreaterThanOrEqual(bridge.startTime);
      },
      { timeout: 60_000, interval: 500 },
    );

    // the agent's log lines of that call carry the same trace id
    const log = readFileSync(join(lab.paths.logs, 'agent-node-2.log'), 'utf8');
    const lines = log
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { trace_id?: string; msg?: string });
    expect(lines.some((l) => l.trace_id === traceId && l.msg === 'ADD done')).toBe(true);
  });
});
