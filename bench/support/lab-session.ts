// What the lab benches do around a lab they started: reach its apiserver, make a namespace pods
// can be created in, wait for a pod's record.
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeClient, readPodRecord, readState } from '@dyad/lab';
import type { LabPaths, PodRecordValue } from '@dyad/lab';

/** The apiserver of the lab whose state `up` wrote at `paths`. */
export function labKube(paths: LabPaths): KubeClient {
  const state = readState(paths.state);
  if (state?.apiserver === undefined || state.tls === undefined)
    throw new Error('no apiserver in the lab state');
  return new KubeClient(state.apiserver, state.tls);
}

/** Creates a namespace and waits for its default ServiceAccount, without which no pod is admitted. */
export async function createNamespace(kube: KubeClient, ns: string): Promise<void> {
  await kube.call('POST', '/api/v1/namespaces', {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: ns },
  });
  while (
    (await kube.tryCall('GET', `/api/v1/namespaces/${ns}/serviceaccounts/default`)) === undefined
  )
    await sleep(100);
}

/**
 * A pod's record once it has `families` addresses. `pollMs` is how often the record is read: a
 * measurement that starts from it wants it small.
 */
export async function waitPodRecord(
  podsDir: string,
  ns: string,
  name: string,
  o: { families: number; timeoutMs: number; pollMs: number },
): Promise<PodRecordValue> {
  const until = Date.now() + o.timeoutMs;
  for (;;) {
    const r = readPodRecord(podsDir, ns, name);
    if (r !== undefined && r.podIPs.length === o.families) return r;
    if (Date.now() > until) throw new Error(`pod ${name} not running after ${o.timeoutMs} ms`);
    await sleep(o.pollMs);
  }
}
