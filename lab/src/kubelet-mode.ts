// `lab up --kubelet`: every node runs a real kubelet (tools/bin/kubelet, the apiserver's version)
// and containerd with runc from Debian, both in the node's netns, with the node's own kubelet root,
// containerd root, state and socket. Pods get their sandboxes from containerd's CRI plugin, which
// calls dyad-cni through a conflist of the chart's cniVersion; the kubelet writes status.podIPs
// from the CNI result. The lab's stand-in still serves probes: kubelet-pods.ts starts one in each
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
import { parse } from 'yaml';
import { readImagesFile } from '@dyad/deploy/images-file';
import type { LabPaths } from './paths.ts';
import type { NodeRecordValue } from './state.ts';
import type { Supervisor } from './supervisor.ts';

const exec = promisify(execFile);

/** Where the kubelet in a node netns reaches the apiserver (a relay to the machine's loopback). */
export const NODE_APISERVER = '127.0.0.1:6443';
/** The pause image `npm run images` builds; the only image a kubelet-mode lab pod needs. */
export const PAUSE_IMAGE = 'docker.io/library/dyad-pause:0.1.0';

export interface KubeletNodeFiles {
  readonly dir: string;
  readonly containerdConfig: string;
  readonly containerdSocket: string;
  readonly kubeletConfig: string;
  readonly kubeletRoot: string;
  readonly kubeconfig: string;
  readonly cniConfDir: string;
  readonly conflist: string;
  /** CNI_PATH: dyad-cni, and the loopback plugin containerd's CRI calls for every sandbox. */
  readonly cniBinDir: string;
}

export function kubeletNodeFiles(paths: LabPaths, node: string): KubeletNodeFiles {
  const dir = join(paths.dir, 'kubelet', node);
  return {
    dir,
    containerdConfig: join(dir, 'containerd.toml'),
    containerdSocket: join(dir, 'containerd.sock'),
    kubeletConfig: join(dir, 'kubelet.yaml'),
    kubeletRoot: join(dir, 'kubelet'),
    kubeconfig: join(dir, 'kubeconfig'),
    cniConfDir: join(dir, 'net.d'),
    conflist: join(dir, 'net.d', '05-dyad.conflist'),
    cniBinDir: join(dir, 'cni-bin'),
  };
}

/** The conflist's cniVersion the chart installs (deploy/values.yaml `cni.cniVersion`). */
export function chartCniVersion(root: string): string {
  const values = parse(readFileSync(join(root, 'deploy', 'values.yaml'), 'utf8')) as {
    cni?: { cniVersion?: unknown };
  };
  const v = values.cni?.cniVersion;
  if (typeof v !== 'string') throw new Error('deploy/values.yaml has no cni.cniVersion');
  return v;
}

/**
 * containerd 1.6's config for one node. `restrict_oom_score_adj`: these machines deny lowering
 * oom_score_adj, and runc then fails with "can't get final child's PID from pipe". Pod netns
 * are mounted under the node's state dir, so the lab's cleanup finds them.
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
  netns_mounts_under_state_dir = true
  sandbox_image = "${PAUSE_IMAGE}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${f.cniBinDir}"
    conf_dir = "${f.cniConfDir}"
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

export function conflist(cniVersion: string, agentSocket: string): string {
  return `${JSON.stringify(
    { cniVersion, name: 'dyad', plugins: [{ type: 'dyad-cni', agentSocket }] },
    null,
    2,
  )}\n`;
}

/** Debian's containernetworking-plugins (scripts/ensure.sh installs it). */
export const LOOPBACK_PLUGIN = '/usr/lib/cni/loopback';

/** Writes every file of a node but the conflist (startKubeletNode writes it). */
export function writeNodeFiles(paths: LabPaths, n: NodeRecordValue): KubeletNodeFiles {
  const f = kubeletNodeFiles(paths, n.name);
  mkdirSync(f.cniConfDir, { recursive: true });
  mkdirSync(f.kubeletRoot, { recursive: true });
  mkdirSync(f.cniBinDir, { recursive: true });
  symlinkSync(join(paths.root, 'cni', 'build', 'dyad-cni'), join(f.cniBinDir, 'dyad-cni'));
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
): string[] {
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
    'dyad.io/lab=true',
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

/** The network namespace path of a pod's sandbox, from containerd's record of it. */
export async function sandboxNetns(socket: string, podUid: string): Promise<string | undefined> {
  const { stdout } = await ctr(
    socket,
    'containers',
    'ls',
    '-q',
    // one filter, its terms ANDed (separate filters would be ORed)
    `labels."io.kubernetes.pod.uid"==${podUid},labels."io.cri-containerd.kind"==sandbox`,
  );
  for (const id of stdout.split('\n').filter((l) => l !== '')) {
    const info = JSON.parse((await ctr(socket, 'containers', 'info', id)).stdout) as {
      Spec?: { linux?: { namespaces?: { type: string; path?: string }[] } };
    };
    const path = info.Spec?.linux?.namespaces?.find((ns) => ns.type === 'network')?.path;
    if (path !== undefined && path !== '') return path;
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
  readonly node: NodeRecordValue;
  readonly families: readonly Family[];
  /** The machine-side unix socket relayed to the apiserver. */
  readonly apiserverSocket: string;
  /** The pause image's OCI archive (`npm run images`). */
  readonly pauseArchive: string;
}

/**
 * One node's runtime half: the apiserver relay into its netns, containerd (waited for, the pause
 * image imported), the conflist (the chart's cniVersion, this node's agent socket), the kubelet,
 * and the pod-record keeper. All supervised, all in the node's netns but the keeper.
 */
export async function startKubeletNode(s: KubeletNodeStart): Promise<void> {
  const n = s.node;
  const root = s.paths.root;
  const f = writeNodeFiles(s.paths, n);
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
    command: 'containerd',
    args: ['--config', f.containerdConfig],
    restart: true,
  });
  for (let i = 0; !(await containerdAnswers(f.containerdSocket)); i++) {
    if (i > 300)
      throw new Error(`containerd of ${n.name} does not answer on ${f.containerdSocket}`);
    await sleep(100);
  }
  await importImage(f.containerdSocket, s.pauseArchive);
  writeFileSync(f.conflist, conflist(chartCniVersion(root), n.cniSocket));
  s.supervisor.start({
    name: `kubelet-${n.name}`,
    netns: n.netns,
    command: join(root, 'tools', 'bin', 'kubelet'),
    args: kubeletArgs(f, n, s.families),
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

/** The pause image's archive from `npm run images` (built here first when there is none). */
export async function pauseArchive(root: string): Promise<string> {
  const dir = process.env.DYAD_IMAGES_DIR ?? join(root, '.images');
  const find = async (): Promise<string | undefined> => {
    try {
      const built = await readImagesFile(dir);
      const pause = built.images.find((i) => i.name === PAUSE_IMAGE);
      return pause === undefined ? undefined : join(dir, pause.archive);
    } catch {
      return undefined;
    }
  };
  const found = await find();
  if (found !== undefined && existsSync(found)) return found;
  await exec(process.execPath, [join(root, 'deploy', 'images', 'build.ts')], {
    maxBuffer: 16 * 1024 * 1024,
  });
  const built = await find();
  if (built === undefined) throw new Error(`npm run images wrote no ${PAUSE_IMAGE} into ${dir}`);
  return built;
}
