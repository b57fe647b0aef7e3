// Kubelet mode end to end (`lab up --kubelet`): three nodes, each with a real kubelet and
// Debian's containerd 1.6 + runc in its netns. Pods created with kubectl get their sandboxes from
// containerd's CRI plugin, which calls dyad-cni through the conflist of the chart's cniVersion;
// the kubelet writes status.podIPs from that result. The matrix: every pod reaches every other
// pod over TCP, UDP and ICMP in both families. Deleting a pod goes through the kubelet (CNI DEL:
// its endpoint leaves the agent), and `down` leaves no namespace, mount or container behind.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, test } from 'vitest';
import { listNetns } from '../src/sys.ts';
import { TestLab, fullMatrix, labRequired, labSkipReason, matrix } from './helpers.ts';

const skip = labSkipReason();
if (skip && labRequired()) test('lab tier is required', () => expect.fail(skip));

const PORT = 8080;
const NODES = ['node-1', 'node-2', 'node-3'];

function manifest(pods: ReadonlyArray<{ name: string; node: string }>): string {
  return pods
    .map(
      (p) => `apiVersion: v1
kind: Pod
metadata: { name: ${p.name}, namespace: default }
spec:
  nodeName: ${p.node}
  containers:
    - name: main
      image: dyad-pause:0.1.0
      imagePullPolicy: Never
      ports: [{ name: echo, containerPort: ${PORT} }]
`,
    )
    .join('---\n');
}

describe.skipIf(skip !== undefined)('lab --kubelet: real kubelets and containerd', () => {
  const lab = new TestLab('kubelet');
  const pods = Array.from({ length: 6 }, (_, i) => ({
    name: `k-${i}`,
    node: NODES[i % NODES.length] ?? 'node-1',
  }));
  const refs = pods.map((p) => `default/${p.name}`);
  let prefix = '';

  beforeAll(async () => {
    prefix = (await lab.up(['--kubelet'])).prefix;
    lab.kubectl(['apply', '-f', '-'], manifest(pods));
    await lab.waitPods(refs, 2);
  }, 600_000);

  afterAll(async () => {
    await lab.down();
  }, 120_000);

  it('nodes are registered by kubelets on containerd, pods got both families from the kubelet', () => {
    const nodes = JSON.parse(lab.kubectl(['get', 'nodes', '-o', 'json'])) as {
      items: Array<{
        status: { nodeInfo: { kubeletVersion: string; containerRuntimeVersion: string } };
      }>;
    };
    expect(nodes.items).toHaveLength(3);
    for (const n of nodes.items) {
      expect(n.status.nodeInfo.containerRuntimeVersion).toMatch(/^containerd:\/\/1\.6\./);
      expect(n.status.nodeInfo.kubeletVersion).toMatch(/^v1\.\d+\.\d+$/);
    }
    const k8s = JSON.parse(lab.kubectl(['get', 'pods', '-o', 'json'])) as {
      items: Array<{
        status: {
          phase: string;
          podIPs: Array<{ ip: string }>;
          containerStatuses: Array<{ containerID: string; ready: boolean }>;
        };
      }>;
    };
    expect(k8s.items).toHaveLength(pods.length);
    for (const p of k8s.items) {
      expect(p.status.phase).toBe('Running');
      // a container containerd started, not a stand-in's status
      expect(p.status.containerStatuses[0]?.containerID).toMatch(/^containerd:\/\//);
      expect(p.status.podIPs.map((x) => (x.ip.includes(':') ? 'IPv6' : 'IPv4'))).toEqual([
        'IPv4',
        'IPv6',
      ]);
    }
    // the conflist containerd read is the chart's version
    const conflist = JSON.parse(
      readFileSync(join(lab.paths.dir, 'kubelet', 'node-1', 'net.d', '05-dyad.conflist'), 'utf8'),
    ) as { cniVersion: string };
    expect(conflist.cniVersion).toBe('1.0.0');
  });

  it('every pod reaches every other pod over TCP, UDP and ICMP in both families', async () => {
    const lines = matrix(refs, PORT, ['IPv4', 'IPv6'], ['TCP', 'UDP', 'ICMP']);
    expect(lines).toHaveLength(6 * 5 * 2 * 3);
    const { failures } = await fullMatrix(lab, lines);
    expect(failures).toEqual([]);
  });

  it('a pod deleted with kubectl leaves its node through the kubelet (CNI DEL)', () => {
    const gone = pods[0];
    if (gone === undefined) throw new Error('no pods');
    lab.kubectl(['delete', 'pod', gone.name, '--wait=true']);
    const e = lab.dyad(['endpoint', 'list', '--node', gone.node, '-o', 'json']);
    expect(e.status).toBe(0);
    const names = (JSON.parse(e.stdout) as Array<{ pod: { name: string } }>).map((x) => x.pod.name);
    expect(names).not.toContain(gone.name);
    expect(names.length).toBeGreaterThan(0);
  });

  it('down leaves no namespace, mount or containerd state behind', async () => {
    await lab.down();
    expect(listNetns().filter((n) => n.startsWith(`${prefix}-`))).toEqual([]);
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((l) => l.includes(lab.paths.dir));
    expect(mounts).toEqual([]);
  });
});
