// A kubelet-mode node's own view of the host paths the chart mounts. On one machine the three
// nodes would otherwise share /run/dyad, /var/lib/dyad, /etc/cni/net.d, /opt/cni/bin, /run/netns
// /sys/fs/bpf and the kubelet's /var/log/pods, i.e. one agent's sockets, state, pins and conflist for all. Each node gets a
// mount namespace (kept by a bind mount of its ns file, so kubelet and containerd can both enter
// it) in which those paths are bind mounts of per-node directories: under `.lab/kubelet/<node>/host`
// and, for bpffs, the run's pin directory `/sys/fs/bpf/<p>/<node>`. Nothing is written to the
// machine's own /etc/cni, /opt/cni or /sys/fs/bpf outside the run's prefix.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { OWNER_DIR } from './paths.ts';
import { run } from './sys.ts';

export interface NodeBind {
  /** The path as the node (kubelet, containerd, its pods) sees it. */
  readonly target: string;
  /** The per-node directory on the machine. */
  readonly source: string;
}

/** Host paths the chart's pods mount, each from a per-node directory. Pure. */
export function nodeBinds(nodeDir: string, pinDir: string): NodeBind[] {
  const host = (name: string): string => join(nodeDir, 'host', name);
  return [
    { target: '/run/dyad', source: host('run-dyad') },
    { target: '/var/lib/dyad', source: host('var-lib-dyad') },
    { target: '/etc/cni/net.d', source: host('cni-net.d') },
    { target: '/opt/cni/bin', source: host('cni-bin') },
    { target: '/run/netns', source: host('netns') },
    // the kubelet's container logs (what `kubectl logs` would show)
    { target: '/var/log/pods', source: host('pod-logs') },
    { target: '/sys/fs/bpf', source: pinDir },
  ];
}

/** Where a run keeps its nodes' mount namespace files (a private mount, as unshare wants). */
export function mountNsDir(prefix: string): string {
  return join(OWNER_DIR, `${prefix}.mnt`);
}

export function mountNsFile(prefix: string, node: string): string {
  return join(mountNsDir(prefix), node);
}

function isMountPoint(path: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === path);
}

/**
 * Creates the node's mount namespace: a slave of the machine's (the machine's later mounts are
 * seen, the node's never leak back), then every mount in it made shared within it, as systemd
 * leaves a node's `/`: containerd refuses HostToContainer propagation from a private mount, and
 * it judges a path by the first of the mounts stacked on it (here the machine's bpffs, private).
 */
export function createNodeMountNs(
  prefix: string,
  node: string,
  binds: readonly NodeBind[],
): string {
  const dir = mountNsDir(prefix);
  mkdirSync(dir, { recursive: true });
  if (!isMountPoint(dir)) {
    run('mount', ['--bind', dir, dir]);
    run('mount', ['--make-private', dir]);
  }
  const file = mountNsFile(prefix, node);
  writeFileSync(file, '');
  run('unshare', [`--mount=${file}`, '--propagation', 'slave', 'true']);
  const script = [
    'mount --make-rshared /',
    ...binds.map((b) => {
      mkdirSync(b.source, { recursive: true });
      return `mkdir -p '${b.target}' && mount --bind '${b.source}' '${b.target}' && mount --make-shared '${b.target}'`;
    }),
  ].join(' && ');
  run('nsenter', [`--mount=${file}`, 'sh', '-ec', script]);
  return file;
}

/** Releases a run's node mount namespaces (they end with their last process). */
export function removeNodeMountNs(prefix: string): void {
  const dir = mountNsDir(prefix);
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir)) {
    try {
      run('umount', [join(dir, f)]);
    } catch {
      // not mounted
    }
  }
  try {
    run('umount', [dir]);
  } catch {
    // not mounted
  }
  rmSync(dir, { recursive: true, force: true });
}
