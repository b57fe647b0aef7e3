// `kubelet-pods.ts NODE`, kubelet mode only: keeps the lab's pod records for one node, so that
// `dyad lab exec` and `dyad lab probe` work as in the stand-in mode. It does none of the kubelet's
// work: for each pod the real kubelet reports Running with its addresses (from dyad-cni's result
// through CRI), it finds the sandbox's netns in the node's containerd, starts the lab's stand-in
// there (echo on the pod's container ports, probes for the CLI) and writes the record; it removes
// both when the pod is gone. Pods' own containers run whatever their spec says.
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { createLogger } from '@dyad/telemetry';
import { ControlClient } from './control.ts';
import { KubeClient } from './kube-client.ts';
import { kubeletNodeFiles, sandboxNetns } from './kubelet-mode.ts';
import { ENV_DIR, ENV_RUN, labPaths } from './paths.ts';
import { listPodRecords, removePodRecord, writePodRecord } from './records.ts';
import { readState } from './state.ts';
import { alive, kill } from './sys.ts';

const STANDIN = join(import.meta.dirname, 'standin.ts');

const PodList = z.object({
  items: z.array(
    z.object({
      metadata: z.object({
        name: z.string(),
        namespace: z.string(),
        uid: z.string(),
        creationTimestamp: z.string().optional(),
        deletionTimestamp: z.string().optional(),
      }),
      spec: z.object({
        hostNetwork: z.boolean().optional(),
        containers: z.array(
          z.object({
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
        ),
      }),
      status: z
        .object({
          phase: z.string().optional(),
          podIPs: z.array(z.object({ ip: z.string() })).optional(),
        })
        .optional(),
    }),
  ),
});
type Pod = z.infer<typeof PodList>['items'][number];

const nodeName = process.argv[2] ?? '';
const paths = labPaths();
const log = createLogger({ service: `kubelet-pods-${nodeName}` });
const state = readState(paths.state);
if (state?.apiserver === undefined || state.tls === undefined) {
  throw new Error('no lab state with an apiserver: start this from the lab supervisor');
}
const files = kubeletNodeFiles(paths, nodeName);
const kube = new KubeClient(state.apiserver, state.tls);
const controlDir = join(paths.run, 'pods');
mkdirSync(controlDir, { recursive: true });

async function standinReady(control: string, pid: number): Promise<void> {
  for (let i = 0; i < 800; i++) {
    if (!alive(pid)) throw new Error('the stand-in exited at start');
    const c = new ControlClient(control);
    const r = await c.request({ op: 'hello' }, 1000);
    c.close();
    if (r.ok === true) return;
    await sleep(10);
  }
  kill(pid, 'SIGKILL');
  throw new Error('the stand-in did not become ready');
}

/**
 * The sandbox's netns under a lab name (`<p>-k<uid>`, a bind mount in /run/netns): the record and
 * `dyad lab exec` name netns that way, and the lab's cleanup removes every `<p>-*` one.
 */
function nameNetns(path: string, uid: string): string {
  const name = `${state?.prefix ?? 'dl'}-k${uid.replace(/-/g, '').slice(0, 12)}`;
  const target = join('/run/netns', name);
  if (!existsSync(target)) {
    mkdirSync('/run/netns', { recursive: true });
    writeFileSync(target, '');
    execFileSync('mount', ['--bind', path, target]);
  }
  return name;
}

function dropNetnsName(name: string): void {
  try {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  } catch {
    // already gone
  }
}

async function adopt(pod: Pod, podIPs: string[]): Promise<void> {
  const path = await sandboxNetns(files.containerdSocket, pod.metadata.uid);
  if (path === undefined) return; // not in containerd yet: next round
  const netns = nameNetns(path, pod.metadata.uid);
  const ports = pod.spec.containers.flatMap((c) =>
    (c.ports ?? []).map((p) => ({
      ...(p.name === undefined ? {} : { name: p.name }),
      port: p.containerPort,
      protocol: p.protocol ?? 'TCP',
    })),
  );
  const control = join(controlDir, `${pod.metadata.uid}.sock`);
  const out = openSync(
    join(paths.logs, 'pods', `${pod.metadata.namespace}_${pod.metadata.name}.log`),
    'a',
  );
  const child = spawn(
    'nsenter',
    [
      `--net=/run/netns/${netns}`,
      process.execPath,
      STANDIN,
      control,
      JSON.stringify(ports.map((p) => p.port)),
    ],
    {
      env: { ...process.env, [ENV_RUN]: state?.prefix ?? '', [ENV_DIR]: paths.dir },
      stdio: ['ignore', out, out],
      detached: true,
    },
  );
  closeSync(out);
  child.unref();
  if (child.pid === undefined) throw new Error('stand-in did not start');
  await standinReady(control, child.pid);
  writePodRecord(paths.pods, {
    namespace: pod.metadata.namespace,
    name: pod.metadata.name,
    uid: pod.metadata.uid,
    node: nodeName,
    netns,
    containerId: pod.metadata.uid,
    podIPs,
    ports,
    control,
    standinPid: child.pid,
    ...(pod.metadata.creationTimestamp === undefined
      ? {}
      : { createdAt: pod.metadata.creationTimestamp }),
    runningAt: new Date().toISOString(),
  });
  log.info(
    { pod: `${pod.metadata.namespace}/${pod.metadata.name}`, podIPs, netns },
    'pod recorded',
  );
}

async function round(): Promise<void> {
  const list = PodList.parse(
    await kube.call(
      'GET',
      `/api/v1/pods?fieldSelector=spec.nodeName%3D${encodeURIComponent(nodeName)}`,
    ),
  );
  const records = listPodRecords(paths.pods).filter((r) => r.node === nodeName);
  const wanted = new Map<string, Pod>();
  for (const pod of list.items) {
    const ips = (pod.status?.podIPs ?? []).map((p) => p.ip);
    if (pod.spec.hostNetwork === true || pod.metadata.deletionTimestamp !== undefined) continue;
    if (pod.status?.phase !== 'Running' || ips.length === 0) continue;
    wanted.set(pod.metadata.uid, pod);
    if (records.some((r) => r.uid === pod.metadata.uid && alive(r.standinPid))) continue;
    await adopt(pod, ips).catch((err: unknown) =>
      log.warn({ err, pod: pod.metadata.name }, 'pod not recorded yet'),
    );
  }
  for (const r of records) {
    if (wanted.has(r.uid) && alive(r.standinPid)) continue;
    if (alive(r.standinPid)) kill(r.standinPid, 'SIGKILL');
    removePodRecord(paths.pods, r.namespace, r.name, r.uid);
    dropNetnsName(r.netns);
  }
}

mkdirSync(join(paths.logs, 'pods'), { recursive: true });
for (;;) {
  await round().catch((err: unknown) => log.warn({ err }, 'round failed'));
  await sleep(250);
}
