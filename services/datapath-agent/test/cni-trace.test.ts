// Where a CNI call's span hangs: the runtime's TRACEPARENT, else kube-bridge's span of the same
// pod (by UID), else a new root; and the ADD's work (allocation) inside it.
import { ROOT_CONTEXT, context, propagation, trace } from '@opentelemetry/api';
import type { Context } from '@opentelemetry/api';
import { startInMemoryTracing, withSpan } from '@dyad/telemetry';
import type { InMemoryTracing, ReadableSpan } from '@dyad/telemetry';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { handleCni } from '../src/cni/handler.ts';
import type { CniBackend } from '../src/cni/handler.ts';
import { retryingPodContext } from '../src/cni/trace.ts';
import type { CniTraceOptions } from '../src/cni/trace.ts';
import type { PodRef } from '../src/cni/request.ts';
import type { Endpoint } from '../src/endpoint.ts';

const endpoint: Endpoint = {
  containerId: 'c1',
  ifName: 'eth0',
  network: 'dyad',
  netns: '/run/netns/p1',
  pod: { namespace: 'ns', name: 'p1', uid: 'u1' },
  endpointId: 1,
  ipv4: { address: '198.18.1.5', cidr: '198.18.1.0/24', gateway: '198.18.1.1' },
  mac: '0a:00:00:00:00:01',
  hostIfName: 'dyabc',
  hostIfindex: 7,
  hostMac: '0e:00:00:00:00:01',
  mtu: 1500,
  identity: 3,
  flags: 0,
  createdAt: '2025-01-01T00:00:00.000Z',
};

const backend: CniBackend = {
  add: () => withSpan('ipam allocate', () => Promise.resolve(endpoint)),
  del: () => Promise.resolve(undefined),
  check: () => Promise.resolve(undefined),
  gc: () => Promise.resolve(undefined),
  status: () => ({ ready: true, details: 'ok' }),
};

const RUNTIME = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const BRIDGE = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

function add(extraEnv: Record<string, string>, tracing?: CniTraceOptions) {
  const raw = JSON.stringify({
    v: 1,
    env: {
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'c1',
      CNI_NETNS: '/run/netns/p1',
      CNI_IFNAME: 'eth0',
      CNI_ARGS: 'K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p1;K8S_POD_UID=u1',
      ...extraEnv,
    },
    stdin: JSON.stringify({ cniVersion: '1.1.0', name: 'dyad', type: 'dyad-cni' }),
  });
  return handleCni(raw, backend, tracing);
}

const bridgeContext = (): Context => propagation.extract(ROOT_CONTEXT, { traceparent: BRIDGE });

let t: InMemoryTracing;
beforeEach(() => {
  t = startInMemoryTracing();
});
afterEach(async () => {
  await t.shutdown();
});

function span(name: string): ReadableSpan {
  const s = t.spans().find((x) => x.name === name);
  if (s === undefined) throw new Error(`no span ${name}`);
  return s;
}

describe('the CNI span', () => {
  it('is a child of the runtime traceparent, which wins over the pod look-up', async () => {
    const looked: PodRef[] = [];
    const r = await add(
      { TRACEPARENT: RUNTIME },
      {
        lookupMs: 1000,
        podContext: (pod) => {
          looked.push(pod);
          return Promise.resolve(bridgeContext());
        },
      },
    );
    expect(r.exitCode).toBe(0);
    const cni = span('cni ADD');
    expect(cni.spanContext().traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    expect(cni.parentSpanContext?.spanId).toBe('00f067aa0ba902b7');
    expect(cni.attributes['k8s.pod.uid']).toBe('u1');
    expect(looked).toEqual([]);
    // the ADD's own work is inside it
    expect(span('ipam allocate').parentSpanContext?.spanId).toBe(cni.spanContext().spanId);
  });

  it("without one, joins kube-bridge's trace of the same pod, looked up by its UID", async () => {
    const looked: PodRef[] = [];
    await add(
      {},
      {
        lookupMs: 1000,
        podContext: (pod) => {
          looked.push(pod);
          return Promise.resolve(bridgeContext());
        },
      },
    );
    expect(looked).toEqual([{ namespace: 'ns', name: 'p1', uid: 'u1' }]);
    const cni = span('cni ADD');
    expect(cni.spanContext().traceId).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(cni.parentSpanContext?.spanId).toBe('b7ad6b7169203331');
  });

  it('starts a root when the look-up finds nothing, fails, or takes longer than its bound', async () => {
    await add({}, { lookupMs: 1000, podContext: () => Promise.resolve(undefined) });
    await add({}, { lookupMs: 1000, podContext: () => Promise.reject(new Error('nats away')) });
    await add({}, { lookupMs: 20, podContext: () => new Promise<undefined>(() => undefined) });
    // an invalid runtime traceparent is ignored, not trusted
    await add({ TRACEPARENT: '00-00000000000000000000000000000000-0000000000000000-01' });
    const roots = t.spans().filter((s) => s.name === 'cni ADD');
    expect(roots).toHaveLength(4);
    for (const s of roots) expect(s.parentSpanContext).toBeUndefined();
    expect(new Set(roots.map((s) => s.spanContext().traceId)).size).toBe(4);
  });

  it('a look-up that misses asks again until the record arrives, within the bound', async () => {
    let asked = 0;
    const podContext = retryingPodContext(() => {
      asked++;
      return Promise.resolve(asked < 3 ? undefined : bridgeContext());
    }, 1);
    await add({}, { lookupMs: 5000, podContext });
    expect(asked).toBe(3);
    expect(span('cni ADD').parentSpanContext?.spanId).toBe('b7ad6b7169203331');
  });

  it('a retrying look-up stops at the bound, and gives up at once when told to', async () => {
    let asked = 0;
    const never = retryingPodContext(() => {
      asked++;
      return Promise.resolve(undefined);
    }, 1);
    await add({}, { lookupMs: 30, podContext: never });
    const after = asked;
    await new Promise((r) => setTimeout(r, 30));
    expect(asked).toBe(after); // no asking after the call's bound
    const away = retryingPodContext(() => Promise.reject(new Error('NATS is away')), 1);
    const controller = new AbortController();
    await expect(
      away({ namespace: 'ns', name: 'p1', uid: 'u1' }, controller.signal),
    ).rejects.toThrow('NATS is away');
    expect(controller.signal.aborted).toBe(false); // it gave up before any bound
    const roots = t.spans().filter((s) => s.name === 'cni ADD');
    expect(roots[0]?.parentSpanContext).toBeUndefined();
  });

  it('outgoing work in the call carries its trace', async () => {
    const out: Record<string, string> = {};
    const capture: CniBackend = {
      ...backend,
      add: () => {
        propagation.inject(context.active(), out);
        return Promise.resolve(endpoint);
      },
    };
    const raw = JSON.stringify({
      v: 1,
      env: {
        CNI_COMMAND: 'ADD',
        CNI_CONTAINERID: 'c1',
        CNI_NETNS: '/run/netns/p1',
        CNI_IFNAME: 'eth0',
        CNI_ARGS: 'K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p1;K8S_POD_UID=u1',
        TRACEPARENT: RUNTIME,
      },
      stdin: JSON.stringify({ cniVersion: '1.1.0', name: 'dyad', type: 'dyad-cni' }),
    });
    await handleCni(raw, capture);
    const cni = span('cni ADD');
    expect(out['traceparent']).toBe(
      `00-${cni.spanContext().traceId}-${cni.spanContext().spanId}-01`,
    );
    expect(trace.getActiveSpan()).toBeUndefined();
  });
});
