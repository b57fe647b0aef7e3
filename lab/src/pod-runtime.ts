// The lab's pod runtime for one node: `pod-runtime.ts NODE_NAME`. It plays the kubelet's network
// part: registers the Node and keeps it Ready, and for each Pod bound to the node creates a
// sandbox netns, calls the real dyad-cni through the conflist as a container runtime would,
// runs the stand-in process, and writes status.podIPs and phase back. Deletion calls CNI DEL.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { retryWithBackoff } from '@dyad/bus';
import { createLogger } from '@dyad/telemetry';
import { Conflist } from './cni.ts';
import { KubeApiError } from './errors.ts';
import { KubeClient } from './kube-client.ts';
import type { WatchEvent } from './kube-client.ts';
import { NodeHeartbeat } from './kubelet.ts';
import { labPaths } from './paths.ts';
import { removePodRecord, writePodRecord } from './records.ts';
import type { SandboxEnv, SandboxFileValue } from './sandbox.ts';
import {
  StandinPool,
  createSandbox,
  destroySandbox,
  listSandboxes,
  sandboxIntact,
  sandboxPodIps,
} from './sandbox.ts';
import { readState } from './state.ts';

const PodObject = z.object({
  metadata: z.object({
    name: z.string(),
    namespace: z.string(),
    uid: z.string(),
    creationTimestamp: z.string().optional(),
    deletionTimestamp: z.string().optional(),
    resourceVersion: z.string().optional(),
  }),
  spec: z.object({
    nodeName: z.string().optional(),
    hostNetwork: z.boolean().optional(),
    containers: z
      .array(
        z.object({
          name: z.string(),
          image: z.string().optional(),
          ports: z
            .array(
              z.object({
                name: z.string().optional(),
                containerPort: z.number().int(),
                protocol: z.string().optional(),
              }),
            )
            .optional(),
        }),
      )
      .default([]),
  }),
  status: z
    .object({
      phase: z.string().optional(),
      podIPs: z.array(z.object({ ip: z.string() })).optional(),
    })
    .optional(),
});
type Pod = z.output<typeof PodObject>;

const nodeName = process.argv[2] ?? '';
const paths = labPaths();
const logger = createLogger({ service: `pod-runtime-${nodeName}` });

async function loadState() {
  for (;;) {
    const s = readState(paths.state);
    const node = s?.nodes.find((n) => n.name === nodeName);
    if (s?.apiserver !== undefined && s.tls !== undefined && node !== undefined) return { s, node };
    await sleep(200);
  }
}

const { s: state, node } = await loadState();
const kube = new KubeClient(
  state.apiserver ?? '',
  state.tls ?? { caPath: '', certPath: '', keyPath: '' },
);
const env: SandboxEnv = {
  prefix: state.prefix,
  nodeNetns: node.netns,
  conflist: Conflist.parse(JSON.parse(readFileSync(node.conflist, 'utf8'))),
  cniPath: [join(paths.root, 'cni', 'build')],
  dir: join(paths.cni, nodeName, 'sandboxes'),
  runDir: join(paths.run, 'pods'),
  logDir: join(paths.logs, 'pods'),
  families: state.families,
  env: {},
  pool: new StandinPool({ env: {}, log: join(paths.logs, 'pods', `pool-${nodeName}.log`) }),
};
mkdirSync(join(paths.logs, 'pods'), { recursive: true });
env.pool?.fill();
const hostIPs = state.families
  .map((f) => node.addresses[f])
  .filter((a): a is string => a !== undefined);

interface Tracked {
  pod: Pod;
  sandbox?: SandboxFileValue;
  podIPs?: string[];
  /** Serializes work on one pod. */
  chain: Promise<void>;
  gone: boolean;
}
const pods = new Map<string, Tracked>();

function ports(pod: Pod): number[] {
  return pod.spec.containers.flatMap((c) => (c.ports ?? []).map((p) => p.containerPort));
}

function enqueue(uid: string, pod: Pod, work: (t: Tracked) => Promise<void>): void {
  let t = pods.get(uid);
  if (t === undefined) {
    t = { pod, chain: Promise.resolve(), gone: false };
    pods.set(uid, t);
  }
  t.pod = pod;
  const tracked = t;
  tracked.chain = tracked.chain
    .then(() => work(tracked))
    .catch((err: unknown) =>
      logger.error(
        { err, pod: `${pod.metadata.namespace}/${pod.metadata.name}` },
        'pod work failed',
      ),
    );
}

async function patchStatus(pod: Pod, podIPs: string[]): Promise<void> {
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const cond = (type: string) => ({ type, status: 'True', lastTransitionTime: now });
  const body = {
    metadata: { uid: pod.metadata.uid },
    status: {
      phase: 'Running',
      ...(podIPs[0] === undefined ? {} : { podIP: podIPs[0] }),
      podIPs: podIPs.map((ip) => ({ ip })),
      hostIP: hostIPs[0],
      hostIPs: hostIPs.map((ip) => ({ ip })),
      startTime: now,
      conditions: [
        'PodReadyToStartContainers',
        'Initialized',
        'ContainersReady',
        'Ready',
        'PodScheduled',
      ].map(cond),
      containerStatuses: pod.spec.containers.map((c) => ({
        name: c.name,
        image: c.image ?? 'none',
        imageID: '',
        containerID: `dyad-lab://${c.name}`,
        ready: true,
        started: true,
        restartCount: 0,
        state: { running: { startedAt: now } },
      })),
    },
  };
  const { namespace, name } = pod.metadata;
  await kube.call(
    'PATCH',
    `/api/v1/namespaces/${namespace}/pods/${name}/status`,
    body,
    'application/merge-patch+json',
  );
}

/** Whether the pod is still wanted; a call, so each retry reads what other events changed since. */
function unwanted(t: Tracked): boolean {
  return t.gone || t.pod.metadata.deletionTimestamp !== undefined;
}

/** Brings a wanted pod to Running: a sandbox (retrying the ADD while the pod is wanted), then status. */
async function ensureRunning(t: Tracked): Promise<void> {
  const pod = t.pod;
  const id = `${pod.metadata.namespace}/${pod.metadata.name}`;
  if (unwanted(t)) return;
  if (pod.spec.hostNetwork === true) {
    if (pod.status?.phase !== 'Running') await patchStatus(pod, hostIPs);
    return;
  }
  if (t.sandbox !== undefined && !sandboxIntact(t.sandbox)) {
    logger.warn({ pod: id }, 'sandbox broken; recreating');
    await destroySandbox(env, t.sandbox).catch(() => undefined);
    t.sandbox = undefined;
  }
  if (t.sandbox === undefined) {
    const started = await retryWithBackoff(() => createSandbox(env, pod.metadata, ports(pod)), {
      policy: { initialMs: 250, maxMs: 5000 },
      stopped: () => unwanted(t),
      onError: (err, attempt) =>
        logger.warn({ err, pod: id, attempt }, 'sandbox creation failed; retrying'),
    });
    if (started === undefined) return;
    t.sandbox = started.file;
    t.podIPs = started.podIPs;
    logger.info({ pod: id, podIPs: started.podIPs, ...started.timings }, 'sandbox ready');
  }
  const sandbox = t.sandbox;
  const podIPs = t.podIPs ?? sandboxPodIps(env, sandbox);
  t.podIPs = podIPs;
  const have = (pod.status?.podIPs ?? []).map((p) => p.ip);
  writePodRecord(paths.pods, {
    namespace: pod.metadata.namespace,
    name: pod.metadata.name,
    uid: pod.metadata.uid,
    node: nodeName,
    netns: sandbox.netns,
    containerId: sandbox.containerId,
    podIPs,
    ports: pod.spec.containers.flatMap((c) =>
      (c.ports ?? []).map((p) => ({
        ...(p.name === undefined ? {} : { name: p.name }),
        port: p.containerPort,
        protocol: p.protocol ?? 'TCP',
      })),
    ),
    control: sandbox.control,
    standinPid: sandbox.standinPid ?? 0,
    ...(pod.metadata.creationTimestamp === undefined
      ? {}
      : { createdAt: pod.metadata.creationTimestamp }),
    runningAt: new Date().toISOString(),
  });
  if (pod.status?.phase !== 'Running' || have.join(',') !== podIPs.join(',')) {
    await retryWithBackoff(
      async () => {
        try {
          await patchStatus(pod, podIPs);
        } catch (err) {
          // 404/409: the pod (this UID) is gone; its delete event follows.
          if (err instanceof KubeApiError && (err.status === 404 || err.status === 409)) return;
          throw err;
        }
      },
      {
        policy: { initialMs: 250, maxMs: 5000 },
        attempts: 22,
        onError: (err, attempt) =>
          logger.warn({ err, pod: id, attempt }, 'pod status patch failed; retrying'),
      },
    );
  }
}

/** Tears a pod's sandbox down (CNI DEL) and, if the object is still there, finishes its deletion. */
async function ensureGone(t: Tracked, finalize: boolean): Promise<void> {
  const pod = t.pod;
  t.gone = true;
  if (t.sandbox !== undefined) {
    try {
      await destroySandbox(env, t.sandbox);
    } catch (err) {
      logger.error(
        { err, pod: `${pod.metadata.namespace}/${pod.metadata.name}` },
        'CNI DEL failed',
      );
    }
    t.sandbox = undefined;
  }
  removePodRecord(paths.pods, pod.metadata.namespace, pod.metadata.name, pod.metadata.uid);
  if (finalize) {
    // What a kubelet does once the containers are gone: the final delete, grace 0, this UID only.
    await kube.tryCall(
      'DELETE',
      `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`,
      {
        apiVersion: 'v1',
        kind: 'DeleteOptions',
        gracePeriodSeconds: 0,
        preconditions: { uid: pod.metadata.uid },
      },
      undefined,
      [404, 409],
    );
  }
  pods.delete(pod.metadata.uid);
}

function onPod(type: WatchEvent['type'], raw: unknown): void {
  const parsed = PodObject.safeParse(raw);
  if (!parsed.success) return;
  const pod = parsed.data;
  if (pod.spec.nodeName !== nodeName) return;
  const uid = pod.metadata.uid;
  if (type === 'DELETED') {
    enqueue(uid, pod, (t) => ensureGone(t, false));
  } else if (pod.metadata.deletionTimestamp !== undefined) {
    enqueue(uid, pod, (t) => ensureGone(t, true));
  } else if (!(pods.get(uid)?.gone ?? false)) {
    enqueue(uid, pod, (t) => ensureRunning(t));
  }
}

const selector = encodeURIComponent(`spec.nodeName=${nodeName}`);

/** List, then watch from the list's resourceVersion; a 410 or any failure leads to a fresh list. */
async function followPods(signal: AbortSignal): Promise<void> {
  // a call, so each check after an await reads the signal again (TypeScript keeps its narrowing)
  const stopped = () => signal.aborted;
  let first = true;
  while (!stopped()) {
    let rv: string;
    try {
      const list = await kube.call<{ metadata: { resourceVersion: string }; items: unknown[] }>(
        'GET',
        `/api/v1/pods?fieldSelector=${selector}`,
      );
      rv = list.metadata.resourceVersion;
      const live = new Set<string>();
      for (const item of list.items) {
        const p = PodObject.safeParse(item);
        if (p.success) live.add(p.data.metadata.uid);
        onPod('ADDED', item);
      }
      // Pods known before this list that it no longer has were deleted meanwhile.
      for (const [uid, t] of pods)
        if (!live.has(uid)) enqueue(uid, t.pod, (x) => ensureGone(x, false));
      if (first) {
        first = false;
        adoptOrphans(live);
      }
    } catch (err) {
      logger.warn({ err }, 'pod list failed; retrying');
      await sleep(1000);
      continue;
    }
    for (;;) {
      if (stopped()) return;
      // set by the watch callback: declared boolean so TypeScript does not take it for constant
      let expired = false as boolean;
      try {
        await kube.watch(
          `/api/v1/pods?fieldSelector=${selector}&watch=1&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion=${rv}`,
          (e) => {
            const meta = (e.object as { metadata?: { resourceVersion?: string } }).metadata;
            if (e.type === 'ERROR') {
              expired = true;
              return;
            }
            if (meta?.resourceVersion !== undefined) rv = meta.resourceVersion;
            if (e.type !== 'BOOKMARK') onPod(e.type, e.object);
          },
          signal,
        );
      } catch (err) {
        if (stopped()) return;
        logger.warn({ err }, 'pod watch failed; relisting');
        await sleep(500);
        break;
      }
      if (expired) break;
    }
  }
}

/** Sandboxes left from before a restart: kept when their pod still wants them, else torn down. */
function adoptOrphans(live: Set<string>): void {
  for (const s of listSandboxes(env.dir)) {
    const t = [...pods.values()].find((x) => x.pod.metadata.uid === s.uid);
    if (t !== undefined && live.has(s.uid) && t.sandbox === undefined && sandboxIntact(s)) {
      t.sandbox = s;
      t.podIPs = sandboxPodIps(env, s);
      logger.info({ pod: `${s.namespace}/${s.name}` }, 'adopted running sandbox');
      continue;
    }
    if (t?.sandbox?.containerId === s.containerId) continue;
    logger.info(
      { pod: `${s.namespace}/${s.name}`, containerId: s.containerId },
      'removing stale sandbox',
    );
    void destroySandbox(env, s).catch((err: unknown) =>
      logger.warn({ err }, 'stale sandbox removal failed'),
    );
  }
}

const heartbeat = new NodeHeartbeat(kube, {
  name: nodeName,
  addresses: node.addresses,
  families: state.families,
  labels: {
    'kubernetes.io/hostname': nodeName,
    'kubernetes.io/os': 'linux',
    'kubernetes.io/arch': 'amd64',
    'dyad.io/lab': state.prefix,
  },
});
await retryWithBackoff(() => heartbeat.register(), {
  policy: { initialMs: 250, maxMs: 2000 },
  onError: (err, attempt) => logger.warn({ err, attempt }, 'node registration failed; retrying'),
});
heartbeat.start();
logger.info({ node: nodeName, hostIPs }, 'node registered; following pods');

const abort = new AbortController();
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    // Pods keep running (their stand-ins and netns outlive the runtime, as containers outlive
    // a kubelet restart); the next runtime adopts them.
    heartbeat.stop();
    env.pool?.close();
    abort.abort();
    kube.close();
    process.exit(0);
  });
}
await followPods(abort.signal);
