// `lab up --kubelet`: every node runs a real kubelet (tools/bin/kubelet, the apiserver's version)
// and containerd with runc from Debian, both in the node's netns and its own mount namespace
// (node-mounts.ts: the chart's host paths from per-node directories), with the node's own kubelet
// root, containerd root, state and socket. Dyad itself is installed with helm from the images
// (helm-install.ts): its init container puts dyad-cni and the conflist into the node's CNI
// directories, containerd's CRI calls it for every sandbox, the kubelet writes status.podIPs from
// the CNI result. The lab's stand-in still serves probes: kubelet-pods.ts starts one in each
// Running pod's netns and writes the pod record the CLI reads.
import type { Family } from '@dyad/netaddr';
import { execFile } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { readImagesFile, staleImages } from '@dyad/deploy/images-file';
import { createNodeMountNs, nodeBinds } from './node-mounts.ts';
import type { NodeBind } from './node-mounts.ts';
import type { LabPaths } from './paths.ts';
import type { NodeRecordValue } from './state.ts';
import type { Supervisor } from './supervisor.ts';

const exec = promisify(execFile);

/** Where the kubelet in a node netns reaches the apiserver (a relay to the machine's loopback). */
export const NODE_APISERVER = '127.0.0.1:6443';
/** The pause image `npm run images` builds; lab pods use it as their container too. */
export const PAUSE_IMAGE = 'docker.io/library/dyad-pause:0.1.0';

export interface KubeletNodeFiles {
  readonly dir: string;
  readonly containerdConfig: string;
  readonly containerdSocket: string;
  readonly kubeletConfig: string;
  readonly kubeletRoot: string;
  readonly kubeconfig: string;
  /** The chart's host paths as the node sees them, each from a per-node directory. */
  readonly binds: readonly NodeBind[];
  /** The machine's side of the node's /etc/cni/net.d (the chart's install-cni writes it). */
  readonly cniConfDir: string;
  /** ... of /opt/cni/bin: dyad-cni (from the chart) and the loopback plugin CRI calls. */
  readonly cniBinDir: string;
  /** ... of /run/dyad: the agent's CNI and API sockets. */
  readonly runDyad: string;
}

export function kubeletNodeFiles(paths: LabPaths, node: string, pinDir = ''): KubeletNodeFiles {
  const dir = join(paths.dir, 'kubelet', node);
  const binds = nodeBinds(dir, pinDir);
  const source = (target: string): string =>
    binds.find((b) => b.target === target)?.source ?? join(dir, 'host', 'missing');
  return {
    dir,
    containerdConfig: join(dir, 'containerd.toml'),
    containerdSocket: join(dir, 'containerd.sock'),
    kubeletConfig: join(dir, 'kubelet.yaml'),
    kubeletRoot: join(dir, 'kubelet'),
    kubeconfig: join(dir, 'kubeconfig'),
    binds,
    cniConfDir: source('/etc/cni/net.d'),
    cniBinDir: source('/opt/cni/bin'),
    runDyad: source('/run/dyad'),
  };
}

/**
 * containerd 1.6's config for one node. `restrict_oom_score_adj`: these machines deny lowering
 * oom_score_adj, and runc then fails with "can't get final child's PID from pipe". The CNI
 * directories and pod netns (/run/netns) are the standard paths: in the node's mount namespace
 * they are its own directories, where the chart's agent finds them.
 */
export function containerdConfig(f: KubeletNodeFiles): string {
  return `version = 2
root = "${join(f.dir, 'containerd', 'root')}"
state = "${join(f.dir, 'containerd', 'state')}"
[grpc]
  address = "${f.containerdSocket}"
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  restrict_oom_score_adj = true
  sandbox_image = "${PAUSE_IMAGE}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
    max_conf_num = 1
`;
}

/**
 * The kubelet's configuration. These machines have cgroup v1 (`failCgroupV1: false`) and no
 * systemd; node allocatable, QoS cgroups and eviction are off because three kubelets share one
 * machine's cgroups and disk.
 */
export function kubeletConfig(f: KubeletNodeFiles): string {
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
containerRuntimeEndpoint: unix://${f.containerdSocket}
readOnlyPort: 0
evictionHard: {}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: false
serializeImagePulls: false
nodeStatusUpdateFrequency: 2s
syncFrequency: 10s
`;
}

/** The admin kubeconfig with the server the node netns reaches (the relay). */
export function nodeKubeconfig(admin: string): string {
  const out = admin.replace(/server: "?https:\/\/[^\s"]+"?/, `server: "https://${NODE_APISERVER}"`);
  if (out === admin) throw new Error('the admin kubeconfig names no https server');
  return out;
}

/** Debian's containernetworking-plugins (scripts/ensure.sh installs it). */
export const LOOPBACK_PLUGIN = '/usr/lib/cni/loopback';

/** Writes every file of a node; dyad-cni and the conflist come from the chart. */
export function writeNodeFiles(paths: LabPaths, n: NodeRecordValue): KubeletNodeFiles {
  const f = kubeletNodeFiles(paths, n.name, n.pinDir);
  for (const b of f.binds) mkdirSync(b.source, { recursive: true });
  mkdirSync(f.kubeletRoot, { recursive: true });
  symlinkSync(LOOPBACK_PLUGIN, join(f.cniBinDir, 'loopback'));
  writeFileSync(f.containerdConfig, containerdConfig(f));
  writeFileSync(f.kubeletConfig, kubeletConfig(f));
  writeFileSync(f.kubeconfig, nodeKubeconfig(readFileSync(paths.kubeconfig, 'utf8')));
  return f;
}

export function kubeletArgs(
  f: KubeletNodeFiles,
  n: NodeRecordValue,
  families: readonly Family[],
  natsNode: boolean,
): string[] {
  // the chart's NATS servers run on the nodes labelled so (nats.nodeSelector)
  const labels = ['dyad.io/lab=true', ...(natsNode ? ['dyad.io/nats=true'] : [])];
  const ips = families.map((fam) => n.addresses[fam]).filter((a) => a !== undefined);
  return [
    '--config',
    f.kubeletConfig,
    '--kubeconfig',
    f.kubeconfig,
    '--root-dir',
    f.kubeletRoot,
    '--cert-dir',
    join(f.kubeletRoot, 'pki'),
    '--hostname-override',
    n.name,
    '--node-ip',
    ips.map((a) => a.split('/')[0]).join(','),
    '--node-labels',
    labels.join(','),
  ];
}

function ctr(socket: string, ...args: string[]): Promise<{ stdout: string }> {
  return exec('ctr', ['--address', socket, '--namespace', 'k8s.io', ...args], {
    maxBuffer: 16 * 1024 * 1024,
  });
}

export async function containerdAnswers(socket: string): Promise<boolean> {
  try {
    await ctr(socket, 'version');
    return true;
  } catch {
    return false;
  }
}

export async function importImage(socket: string, archive: string): Promise<void> {
  await ctr(socket, 'images', 'import', archive);
}

/**
 * The network namespace of a pod's sandbox, as a path the machine's mount namespace can open:
 * `/proc/<pid>/ns/net` of the sandbox's task (containerd's own netns path is a mount in the
 * node's mount namespace, invisible here).
 */
export async function sandboxNetns(socket: string, podUid: string): Promise<string | undefined> {
  const { stdout } = await ctr(
    socket,
    'containers',
    'ls',
    '-q',
    // one filter, its terms ANDed (separate filters would be ORed)
    `labels."io.kubernetes.pod.uid"==${podUid},labels."io.cri-containerd.kind"==sandbox`,
  );
  const ids = new Set(stdout.split('\n').filter((l) => l !== ''));
  if (ids.size === 0) return undefined;
  const tasks = (await ctr(socket, 'tasks', 'ls')).stdout;
  for (const line of tasks.split('\n')) {
    const [id, pid, status] = line.trim().split(/\s+/);
    if (id !== undefined && ids.has(id) && status === 'RUNNING' && Number(pid) > 0)
      return `/proc/${pid}/ns/net`;
  }
  return undefined;
}

/** SIGKILLs every task containerd runs for the node (lab down), so no container outlives it. */
export async function killAllTasks(socket: string): Promise<void> {
  if (!(await containerdAnswers(socket))) return;
  const { stdout } = await ctr(socket, 'tasks', 'ls', '-q');
  for (const id of stdout.split('\n').filter((l) => l !== '')) {
    await ctr(socket, 'tasks', 'kill', '-s', 'SIGKILL', id).catch(() => undefined);
  }
}

/** Mount points under `dir` (pod netns, overlay rootfs, kubelet volumes), deepest first. */
export function mountsUnder(dir: string, mountinfo: string): string[] {
  const out: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const point = line.split(' ')[4];
    if (point === undefined) continue;
    const decoded = point.replace(/\\040/g, ' ');
    if (decoded === dir || decoded.startsWith(`${dir}/`)) out.push(decoded);
  }
  return out.sort((a, b) => b.length - a.length);
}

export async function unmountUnder(dir: string): Promise<number> {
  const points = mountsUnder(dir, readFileSync('/proc/self/mountinfo', 'utf8'));
  for (const p of points) await exec('umount', ['-l', p]).catch(() => undefined);
  return points.length;
}

/**
 * The kubelet-mode part of `down`: before the processes go, every container of every node is
 * killed through its containerd (pod containers carry no lab mark and live in netns the lab did
 * not name); after, the mounts under `.lab/kubelet` (pod netns, rootfs, volumes) are undone and the
 * directory removed. A no-op for a stand-in lab.
 */
export async function killKubeletContainers(paths: LabPaths): Promise<void> {
  const root = join(paths.dir, 'kubelet');
  if (!existsSync(root)) return;
  for (const node of readdirSync(root)) {
    await killAllTasks(kubeletNodeFiles(paths, node).containerdSocket).catch(() => undefined);
  }
}

export async function removeKubeletFiles(paths: LabPaths): Promise<void> {
  const root = join(paths.dir, 'kubelet');
  if (!existsSync(root)) return;
  await unmountUnder(root);
  rmSync(root, { recursive: true, force: true });
}

export interface KubeletNodeStart {
  readonly supervisor: Supervisor;
  readonly paths: LabPaths;
  readonly prefix: string;
  readonly node: NodeRecordValue;
  readonly families: readonly Family[];
  /** The machine-side unix socket relayed to the apiserver. */
  readonly apiserverSocket: string;
  /** OCI archives to import into the node's containerd (`npm run images`). */
  readonly archives: readonly string[];
  /** Carries one of the chart's NATS servers (label dyad.io/nats=true). */
  readonly natsNode: boolean;
}

/**
 * One node's runtime half: its mount namespace, the apiserver relay into its netns, containerd
 * (waited for, the images imported), the kubelet, and the pod-record keeper. All supervised;
 * containerd and the kubelet in the node's netns and mount namespace, the keeper on the machine.
 */
export async function startKubeletNode(s: KubeletNodeStart): Promise<void> {
  const n = s.node;
  const root = s.paths.root;
  const f = writeNodeFiles(s.paths, n);
  const mountns = createNodeMountNs(s.prefix, n.name, f.binds);
  s.supervisor.start({
    name: `apiserver-relay-${n.name}`,
    netns: n.netns,
    command: process.execPath,
    args: [join(root, 'lab', 'src', 'forward.ts'), NODE_APISERVER, s.apiserverSocket],
    restart: true,
  });
  s.supervisor.start({
    name: `containerd-${n.name}`,
    netns: n.netns,
    mountns,
    command: 'containerd',
    args: ['--config', f.containerdConfig],
    restart: true,
  });
  for (let i = 0; !(await containerdAnswers(f.containerdSocket)); i++) {
    if (i > 300)
      throw new Error(`containerd of ${n.name} does not answer on ${f.containerdSocket}`);
    await sleep(100);
  }
  for (const a of s.archives) await importImage(f.containerdSocket, a);
  s.supervisor.start({
    name: `kubelet-${n.name}`,
    netns: n.netns,
    mountns,
    command: join(root, 'tools', 'bin', 'kubelet'),
    args: kubeletArgs(f, n, s.families, s.natsNode),
    restart: true,
  });
  s.supervisor.start({
    name: `pods-${n.name}`,
    command: process.execPath,
    args: [join(root, 'lab', 'src', 'kubelet-pods.ts'), n.name],
    env: { LOG_LEVEL: process.env.DYAD_LAB_LOG_LEVEL ?? 'info' },
    restart: true,
  });
}

/**
 * The OCI archives of `npm run images`, by image name: built here first when there are none or
 * when what goes into them changed since (a lab must run the code it was started from).
 */
export async function imageArchives(root: string): Promise<Map<string, string>> {
  const dir = process.env.DYAD_IMAGES_DIR ?? join(root, '.images');
  const find = async (): Promise<Map<string, string> | undefined> => {
    if ((await staleImages(root, dir)) !== undefined) return undefined;
    try {
      const built = await readImagesFile(dir);
      const out = new Map(built.images.map((i) => [i.name, join(dir, i.archive)]));
      return [...out.values()].every((a) => existsSync(a)) && out.has(PAUSE_IMAGE)
        ? out
        : undefined;
    } catch {
      return undefined;
    }
  };
  const found = await find();
  if (found !== undefined) return found;
  await exec(process.execPath, [join(root, 'deploy', 'images', 'build.ts')], {
    maxBuffer: 16 * 1024 * 1024,
  });
  const built = await find();
  if (built === undefined) throw new Error(`npm run images wrote no ${PAUSE_IMAGE} into ${dir}`);
  return built;
}
