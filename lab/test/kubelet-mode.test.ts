// The pure parts of kubelet mode: the files each node's containerd and kubelet start from.
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  containerdConfig,
  kubeletConfig,
  kubeletNodeFiles,
  mountsUnder,
  nodeKubeconfig,
  NODE_APISERVER,
  PAUSE_IMAGE,
} from '../src/kubelet-mode.ts';
import { labPaths, REPO } from './helpers.ts';

const files = kubeletNodeFiles(
  labPaths(REPO, '/tmp/dyad-lab-x'),
  'node-2',
  '/sys/fs/bpf/dl0abc/node-2',
);

describe('kubelet mode files', () => {
  it("containerd: the node's own root, state and socket; what these machines need", () => {
    const toml = containerdConfig(files);
    expect(toml).toContain('root = "/tmp/dyad-lab-x/kubelet/node-2/containerd/root"');
    expect(toml).toContain('address = "/tmp/dyad-lab-x/kubelet/node-2/containerd.sock"');
    expect(toml).toContain('restrict_oom_score_adj = true');
    expect(toml).toContain(`sandbox_image = "${PAUSE_IMAGE}"`);
    // the standard paths: in the node's mount namespace they are its own directories, where
    // the chart's install-cni writes and the agent finds pod netns
    expect(toml).not.toContain('netns_mounts_under_state_dir');
    expect(toml).toContain('bin_dir = "/opt/cni/bin"');
    expect(toml).toContain('conf_dir = "/etc/cni/net.d"');
  });

  it("every host path the chart mounts is the node's own directory; bpffs under the run's pins", () => {
    const byTarget = new Map(files.binds.map((b) => [b.target, b.source]));
    expect([...byTarget.keys()].sort()).toEqual(
      [
        '/etc/cni/net.d',
        '/opt/cni/bin',
        '/run/dyad',
        '/run/netns',
        '/sys/fs/bpf',
        '/var/lib/dyad',
        '/var/log/pods',
      ].sort(),
    );
    for (const [target, source] of byTarget) {
      if (target === '/sys/fs/bpf') expect(source).toBe('/sys/fs/bpf/dl0abc/node-2');
      else expect(source.startsWith('/tmp/dyad-lab-x/kubelet/node-2/host/')).toBe(true);
    }
    expect(files.cniConfDir).toBe(byTarget.get('/etc/cni/net.d'));
    expect(files.runDyad).toBe(byTarget.get('/run/dyad'));
  });

  it('kubelet: cgroup v1 allowed, cgroupfs, the node socket', () => {
    const cfg = parse(kubeletConfig(files)) as Record<string, unknown>;
    expect(cfg.failCgroupV1).toBe(false);
    expect(cfg.cgroupDriver).toBe('cgroupfs');
    expect(cfg.containerRuntimeEndpoint).toBe(`unix://${files.containerdSocket}`);
  });

  it("the node's kubeconfig points at the relay; one without a server is refused", () => {
    const admin = 'clusters:\n- cluster:\n    server: "https://127.0.0.1:40123"\n';
    expect(nodeKubeconfig(admin)).toContain(`server: "https://${NODE_APISERVER}"`);
    expect(nodeKubeconfig(admin)).not.toContain('40123');
    expect(() => nodeKubeconfig('clusters: []\n')).toThrow(/no https server/);
  });

  it('mounts under a directory, deepest first, not those of a sibling with the same prefix', () => {
    const line = (point: string) => `36 25 0:5 / ${point} rw shared:1 - nsfs nsfs rw`;
    const info = [
      line('/l/kubelet'),
      line('/l/kubelet/node-1/containerd/state/netns/cni-1'),
      line('/l/kubelet2/x'),
      line('/other'),
      line('/l/kubelet/node-1/kubelet/pods/u/volumes/with\\040space'),
    ].join('\n');
    expect(mountsUnder('/l/kubelet', info)).toEqual([
      '/l/kubelet/node-1/kubelet/pods/u/volumes/with space',
      '/l/kubelet/node-1/containerd/state/netns/cni-1',
      '/l/kubelet',
    ]);
  });
});
