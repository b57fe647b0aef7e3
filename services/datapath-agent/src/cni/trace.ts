import { setTimeout as sleep } from 'node:timers/promises';
import { ROOT_CONTEXT, context, propagation, trace } from '@opentelemetry/api';
import type { Context } from '@opentelemetry/api';
import type { Bus } from '@dyad/bus';
import { K8S_STREAM, PodEvent, k8sObjectSubject } from '@dyad/contracts';
import type { PodRef } from './request.ts';

/**
 * Where a CNI call's span hangs, in this order:
 *
 * 1. the runtime's own context: dyad-cni forwards `TRACEPARENT`/`TRACESTATE` from its
 *    environment (the OpenTelemetry environment carrier) when the runtime sets them;
 * 2. else, for a call that names a pod, kube-bridge's span for that pod: the pod's last message
 *    on DYAD_K8S carries it as `traceparent`, and it is used only when the message's UID is the
 *    call's `K8S_POD_UID`, so a recreated pod of the same name never joins the old one's trace.
 *    This makes one Pod creation one trace, from the watch event to the CNI result and the
 *    map writes that router and policy cause. The runtime may call before kube-bridge has
 *    published the pod (both react to the same watch event), so a miss is retried until the
 *    bound (`lookupMs`); the look-up is skipped while NATS is away: an ADD never waits for NATS
 *    longer than that;
 * 3. else a new root.
 */
export interface CniTraceOptions {
  /**
   * kube-bridge's trace context of the pod, from its message on NATS; undefined if none (yet).
   * `signal` aborts when the bound is reached: a look-up that retries stops there.
   */
  readonly podContext: (pod: PodRef, signal: AbortSignal) => Promise<Context | undefined>;
  readonly lookupMs: number;
}

export async function cniParent(
  env: Readonly<Record<string, string>>,
  pod: PodRef | undefined,
  opts: CniTraceOptions | undefined,
): Promise<Context> {
  const runtime = runtimeContext(env);
  if (runtime !== undefined) return runtime;
  if (opts === undefined || opts.lookupMs === 0 || pod?.uid === undefined) return ROOT_CONTEXT;
  const bound = new AbortController();
  const timeout = new Promise<undefined>((resolve) => {
    bound.signal.addEventListener('abort', () => resolve(undefined), { once: true });
  });
  const timer = setTimeout(() => bound.abort(), opts.lookupMs);
  try {
    const found = await Promise.race([
      opts.podContext(pod, bound.signal).catch(() => undefined),
      timeout,
    ]);
    return found ?? ROOT_CONTEXT;
  } finally {
    clearTimeout(timer);
    bound.abort();
  }
}

/** The runtime's context from the forwarded environment, if it is a valid one. */
export function runtimeContext(env: Readonly<Record<string, string>>): Context | undefined {
  const traceparent = env['TRACEPARENT'];
  if (traceparent === undefined) return undefined;
  const carrier: Record<string, string> = { traceparent };
  if (env['TRACESTATE'] !== undefined) carrier['tracestate'] = env['TRACESTATE'];
  const ctx = propagation.extract(ROOT_CONTEXT, carrier);
  const sc = trace.getSpanContext(ctx);
  return sc !== undefined && trace.isSpanContextValid(sc) ? ctx : undefined;
}

/** How long a look-up that missed waits before it asks again. */
const RETRY_MS = 50;

/**
 * Asks `once` until it finds the pod's context or `signal` aborts: the pod's message may reach
 * NATS a moment after the runtime's call. `once` throws to give up (NATS away): the caller then
 * gets a rejection and starts a root at once.
 */
export function retryingPodContext(
  once: (pod: PodRef) => Promise<Context | undefined>,
  retryMs = RETRY_MS,
): CniTraceOptions['podContext'] {
  return async (pod, signal) => {
    while (!signal.aborted) {
      const found = await once(pod);
      if (found !== undefined) return found;
      await sleep(retryMs, undefined, { signal }).catch(() => undefined);
    }
    return undefined;
  };
}

/**
 * kube-bridge's context for a pod from its last message on DYAD_K8S, when that message is of the
 * same pod (UID), asked again until the call's bound; throws while NATS is away.
 */
export function podContextFromBus(bus: () => Bus | undefined): CniTraceOptions['podContext'] {
  return retryingPodContext(async (pod) => {
    const b = bus();
    // NATS away: give up at once rather than wait out the bound
    if (b === undefined || !b.isConnected()) throw new Error('NATS is away');
    if (pod.uid === undefined) throw new Error('the call names no pod UID');
    const subject = k8sObjectSubject('Pod', pod.namespace, pod.name);
    // Under the root context: the look-up is not part of the pod's trace.
    const snap = await context.with(ROOT_CONTEXT, () =>
      b.snapshot([PodEvent], { stream: K8S_STREAM, filterSubjects: [subject] }),
    );
    const d = snap.get(subject);
    if (d === undefined || d.value.object.metadata.uid !== pod.uid) return undefined;
    const traceparent = d.header('traceparent');
    if (traceparent === undefined) return undefined;
    const tracestate = d.header('tracestate');
    const ctx = propagation.extract(ROOT_CONTEXT, {
      traceparent,
      ...(tracestate === undefined ? {} : { tracestate }),
    });
    const sc = trace.getSpanContext(ctx);
    return sc !== undefined && trace.isSpanContextValid(sc) ? ctx : undefined;
  });
}
