// `lab up --tracing`: one Pod creation is one trace in Jaeger, from kube-bridge's watch event to
// the agent's map writes, and the services' log lines carry its trace id.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, test } from 'vitest';
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
    const wanted = (spans: readonly JaegerSpan[]) => {
      const of = (service: string, name: string) =>
        spans.filter((s) => s.service === service && s.name === name);
      const router = of('router', 'router flush')[0];
      return {
        bridge: of('kube-bridge', 'k8s upsert Pod')[0],
        cni: of('datapath-agent', 'cni ADD')[0],
        allocate: of('datapath-agent', 'ipam allocate')[0],
        router,
        policy: of('policy', 'policy compile')[0],
        // the map write on the pod's node that the router's message caused
        agentWrite: of('datapath-agent', 'datapath write').find(
          (s) =>
            s.process['k8s.node.name'] === 'node-2' &&
            router !== undefined &&
            s.startTime > router.startTime,
        ),
      };
    };
    const { spans, found } = await waitFor('every service in the trace', async () => {
      const spans = await fetchTrace(queryUrl, traceId ?? '');
      const found = wanted(spans);
      return Object.values(found).every((s) => s !== undefined) ? { spans, found } : undefined;
    });
    const must = (s: JaegerSpan | undefined): JaegerSpan => {
      if (s === undefined) throw new Error('span missing');
      return s;
    };
    const bridge = must(found.bridge);
    const cni = must(found.cni);
    const allocate = must(found.allocate);
    const router = must(found.router);
    const policy = must(found.policy);
    const agentWrite = must(found.agentWrite);
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const ancestors = (s: JaegerSpan): string[] => {
      const out: string[] = [];
      for (let p = byId.get(s.parentSpanId ?? ''); p; p = byId.get(p.parentSpanId ?? ''))
        out.push(p.spanId);
      return out;
    };
    // correctly parented: each step descends from the one that caused it
    expect(bridge.parentSpanId).toBeUndefined();
    expect(cni.process['k8s.node.name']).toBe('node-2');
    expect(ancestors(cni)).toContain(bridge.spanId);
    expect(allocate.parentSpanId).toBe(cni.spanId);
    expect(ancestors(router)).toContain(cni.spanId);
    expect(ancestors(policy)).toContain(bridge.spanId);
    expect(ancestors(agentWrite)).toContain(router.spanId);
    // in order
    const order = [bridge, cni, router, agentWrite].map((s) => s.startTime);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(policy.startTime).toBeGreaterThanOrEqual(bridge.startTime);

    // the agent's log lines of that call carry the same trace id
    const log = readFileSync(join(lab.paths.logs, 'agent-node-2.log'), 'utf8');
    const lines = log
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { trace_id?: string; msg?: string });
    expect(lines.some((l) => l.trace_id === traceId && l.msg === 'ADD done')).toBe(true);
  });
});
