// What an operator observes, in one lab (`up --nodes 2 --tracing`) so CI starts one lab for both:
// - flows: a pod whose NetworkPolicy admits nothing refuses a connection from a pod on another
//   node, and `dyad observe --verdict dropped` (cluster-wide, from NATS) shows that drop with both
//   pods' names, for IPv4 and for IPv6;
// - traces: one Pod creation is one trace in Jaeger, from kube-bridge's watch event to the
//   agents' map writes (a batched step is a child of its batch's first input and links to the
//   others, so it may sit in another trace, linked), and the agent's log lines carry its trace id.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FAMILIES } from '@dyad/netaddr';
import type { FlowEventValue } from '@dyad/contracts';
import { afterAll, beforeAll, describe, expect, it, test, vi } from 'vitest';
import { labStatusReport } from '../src/commands.ts';
import { fetchTrace, findTraces } from '../src/jaeger.ts';
import type { JaegerSpan } from '../src/jaeger.ts';
import { TestLab, labRequired, labSkipReason, podManifest } from './helpers.ts';

const skip = labSkipReason(['jaeger']);
if (skip && labRequired()) test('lab tier is required', () => expect.fail(skip));

const PORT = 8080;
const NS = 'observe';
const DEADLINE_MS = 60_000;

/** The ids of s's ancestors within its trace, nearest first. */
function ancestorsIn(trace: readonly JaegerSpan[], s: JaegerSpan): string[] {
  const out: string[] = [];
  let p = trace.find((x) => x.spanId === s.parentSpanId);
  while (p !== undefined) {
    out.push(p.spanId);
    const id = p.parentSpanId;
    p = trace.find((x) => x.spanId === id);
  }
  return out;
}

/** The ids of root and every span under it in its trace. */
function subtree(trace: readonly JaegerSpan[], root: JaegerSpan): Set<string> {
  return new Set(
    trace
      .filter((x) => x === root || ancestorsIn(trace, x).includes(root.spanId))
      .map((x) => x.spanId),
  );
}

describe.skipIf(skip !== undefined)('lab --tracing: flows and traces', () => {
  const lab = new TestLab('observe');
  /** The server pod's UID: its creation is the traced one. */
  let uid = '';

  beforeAll(async () => {
    // debug: the agent logs each ADD inside the call's span
    process.env.DYAD_LAB_LOG_LEVEL = 'debug';
    const state = await lab.up(['--nodes', '2', '--tracing']);
    lab.env['NATS_URL'] = state.natsUrl;
    // A third-party tool's view: the observer identity, which reads flows and nothing else.
    lab.env['NATS_CREDS'] = `${state.natsCreds}/observer.creds`;
    lab.env['NATS_CA'] = state.natsCa;
    lab.kubectl(['create', 'namespace', NS]);
    lab.kubectl(
      ['apply', '-f', '-'],
      podManifest(
        [
          { namespace: NS, name: 'client', node: 'node-1' },
          { namespace: NS, name: 'server', node: 'node-2' },
        ],
        PORT,
      ),
    );
    await lab.waitPods([`${NS}/client`, `${NS}/server`], state.families.length);
    uid = lab.kubectl(['get', 'pod', '-n', NS, 'server', '-o', 'jsonpath={.metadata.uid}']);
    lab.kubectl(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'networking.k8s.io/v1',
        kind: 'NetworkPolicy',
        metadata: { name: 'deny-ingress', namespace: NS },
        spec: { podSelector: { matchLabels: { app: 'server' } }, policyTypes: ['Ingress'] },
      }),
    );
  }, 600_000);

  afterAll(async () => {
    delete process.env.DYAD_LAB_LOG_LEVEL;
    await lab.down();
  }, 120_000);

  describe('flows: policy drops in dyad observe', () => {
    it.each(FAMILIES)(
      '%s: the refused connection is a dropped flow naming both pods',
      async (family) => {
        // policy reaches node-2 a moment after the apiserver has it, the flow NATS after the drop
        const hit = await vi.waitFor(
          async () => {
            const [r] = await lab.probeBatch(
              [{ from: `${NS}/client`, to: `${NS}/server`, port: PORT, protocol: 'TCP', family }],
              1000,
            );
            const out = lab.dyad([
              'observe',
              '--verdict',
              'dropped',
              '--namespace',
              NS,
              '--family',
              family,
              '--last',
              '50',
              '-o',
              'json',
            ]);
            expect(out.status, out.stderr).toBe(0);
            expect(r?.result).toBe('blocked');
            const seen = out.stdout
              .split('\n')
              .filter((l) => l !== '')
              .map((l) => JSON.parse(l) as FlowEventValue);
            const found = seen.find(
              (f) => f.source.pod_name === 'client' && f.destination.pod_name === 'server',
            );
            if (found === undefined)
              throw new Error(
                `no dropped ${family} flow client -> server: ${JSON.stringify(seen)}`,
              );
            return found;
          },
          { timeout: DEADLINE_MS, interval: 500 },
        );
        expect(hit).toMatchObject({
          verdict: 'DROPPED',
          drop_reason_desc: 'POLICY_DENIED',
          traffic_direction: 'INGRESS',
          node_name: 'node-2',
          IP: { ipVersion: family },
          l4: { TCP: { destination_port: PORT, flags: { SYN: true } } },
          source: { namespace: NS, pod_name: 'client' },
          destination: { namespace: NS, pod_name: 'server' },
        });
        expect(hit.destination.labels).toContain('k8s:app=server');
      },
      DEADLINE_MS + 30_000,
    );
  });

  describe('traces: one Pod creation, one trace in Jaeger', () => {
    let queryUrl = '';

    it("names Jaeger's query URL in `lab status -o json`", async () => {
      const report = labStatusReport(lab.paths);
      queryUrl = report.state?.jaeger?.queryUrl ?? '';
      expect(queryUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      // every process exports in batches: wait until each has sent something
      await vi.waitFor(
        async () => {
          const services = (await (await fetch(`${queryUrl}/api/services`)).json()) as {
            data: string[];
          };
          expect(services.data).toEqual(
            expect.arrayContaining(['kube-bridge', 'router', 'policy', 'datapath-agent']),
          );
        },
        { timeout: 60_000, interval: 500 },
      );
    });

    /**
     * The batched steps (the router's flush, the policy service's compile) caused by any of
     * `cause`: a batch span is the child of its first input and links (Jaeger: FOLLOWS_FROM) to
     * the others, so the span is a descendant of a cause in `spans` or, in whichever trace, links
     * to one. Each with the spans of its trace, to follow what it caused in turn.
     */
    async function* batchedSteps(
      spans: readonly JaegerSpan[],
      service: string,
      name: string,
      cause: ReadonlySet<string>,
      node?: string,
    ): AsyncGenerator<{ span: JaegerSpan; trace: readonly JaegerSpan[] }> {
      const caused = (s: JaegerSpan, trace: readonly JaegerSpan[]): boolean =>
        s.service === service &&
        s.name === name &&
        (node === undefined || s.process['k8s.node.name'] === node) &&
        (ancestorsIn(trace, s).some((a) => cause.has(a)) || s.links.some((l) => cause.has(l)));
      for (const span of spans.filter((s) => caused(s, spans))) yield { span, trace: spans };
      for (const id of await findTraces(queryUrl, service, name, {}, 500)) {
        const trace = await fetchTrace(queryUrl, id);
        if (trace[0]?.traceId === spans[0]?.traceId) continue; // read above
        for (const span of trace.filter((s) => caused(s, trace))) yield { span, trace };
      }
    }

    /** The first of batchedSteps. */
    async function batchedStep(
      ...args: Parameters<typeof batchedSteps>
    ): Promise<{ span: JaegerSpan; trace: readonly JaegerSpan[] }> {
      for await (const step of batchedSteps(...args)) return step;
      const [, service, name, , node] = args;
      throw new Error(`no ${service} ${name}${node ? ` on ${node}` : ''} caused by the pod yet`);
    }

    /** A router flush caused by the pod that caused a map write on node-1, and that write. */
    async function flushAndWrite(
      spans: readonly JaegerSpan[],
      pod: ReadonlySet<string>,
    ): Promise<{ router: JaegerSpan; write: JaegerSpan }> {
      for await (const router of batchedSteps(spans, 'router', 'router flush', pod)) {
        const caused = subtree(router.trace, router.span);
        for await (const write of batchedSteps(
          router.trace,
          'datapath-agent',
          'datapath write',
          caused,
          'node-1',
        ))
          return { router: router.span, write: write.span };
      }
      throw new Error('no router flush caused by the pod with a map write on node-1 yet');
    }

    it("one trace holds the pod's path through kube-bridge, the agent, router and policy, in order", async () => {
      const traceId = await vi.waitFor(
        async () => {
          const ids = await findTraces(queryUrl, 'datapath-agent', 'cni ADD', {
            'k8s.pod.uid': uid,
          });
          const [id] = ids;
          if (id === undefined) throw new Error('no CNI ADD trace of the pod yet');
          return id;
        },
        { timeout: 120_000, interval: 500 },
      );
      // Spans arrive at Jaeger in batches from six processes: check until the whole chain is there.
      await vi.waitFor(
        async () => {
          const spans = await fetchTrace(queryUrl, traceId);
          const of = (
            trace: readonly JaegerSpan[],
            service: string,
            name: string,
            under?: JaegerSpan,
            node?: string,
          ): JaegerSpan => {
            const s = trace.find(
              (x) =>
                x.service === service &&
                x.name === name &&
                (under === undefined || ancestorsIn(trace, x).includes(under.spanId)) &&
                (node === undefined || x.process['k8s.node.name'] === node),
            );
            if (s === undefined)
              throw new Error(
                `no ${service} ${name}${under ? ` under ${under.name}` : ''}${node ? ` on ${node}` : ''} yet`,
              );
            return s;
          };
          // correctly parented: each step descends from the one that caused it
          const bridge = of(spans, 'kube-bridge', 'k8s upsert Pod');
          expect(bridge.parentSpanId).toBeUndefined();
          const cni = of(spans, 'datapath-agent', 'cni ADD', bridge);
          expect(cni.process['k8s.node.name']).toBe('node-2');
          expect(of(spans, 'datapath-agent', 'ipam allocate', cni).parentSpanId).toBe(cni.spanId);
          // the pod's node writes its maps inside the call
          const ownWrite = of(spans, 'datapath-agent', 'datapath write', cni, 'node-2');
          // the router's computation (batched: a child of its batch's first input, linked to
          // the others) of what the pod's trace brought it (kube-bridge's Pod record or the
          // agent's endpoint report, whichever reached it), and the map write it causes on the
          // node that learns where the pod is
          const pod = subtree(spans, bridge);
          const { router, write } = await flushAndWrite(spans, pod);
          // the policy service's debounced compile, batched the same way, of the pod's upsert
          const policy = await batchedStep(spans, 'policy', 'policy compile', pod);
          // in order
          const order = [bridge, cni, ownWrite].map((s) => s.startTime);
          expect([...order].sort((x, y) => x - y)).toEqual(order);
          expect(router.startTime).toBeGreaterThanOrEqual(bridge.startTime);
          expect(write.startTime).toBeGreaterThanOrEqual(router.startTime);
          expect(policy.span.startTime).toBeGreaterThanOrEqual(bridge.startTime);
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
});
