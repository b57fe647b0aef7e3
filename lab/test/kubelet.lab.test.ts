// Kubelet mode end to end (`lab up --kubelet`): three nodes, each with a real kubelet and
// Debian's containerd 1.6 + runc in its netns and its own mount namespace, and Dyad installed
// with `helm install` from the images: agents as DaemonSet pods, services as Deployments, NATS
// as the chart's StatefulSet. Pods created with kubectl get their sandboxes from containerd's
// CRI plugin, which calls the dyad-cni the chart installed through the chart's conflist; the
// kubelet writes status.podIPs from that result. The matrix: every pod reaches every other pod
// over TCP, UDP and ICMP in both families. `kubectl rollout restart` of the agents and a
// `helm upgrade` to another image roll one node at a time while probes keep connecting and
// established connections stay open. Deleting a pod goes through the kubelet (CNI DEL: its
// endpoint leaves the agent). `helm uninstall` (its pre-delete hook tells every agent over NATS)
// takes Dyad off every node: no conflist, dyad-cni, agent files, pins, tc programs or pod devices
// are left. `down` leaves no namespace, mount or container behind.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PublishError, connectBus } from '@dyad/bus';
import type { BusLogger } from '@dyad/bus';
import {
  AGENT_SERVICE,
  EndpointReport,
  ROUTER_STREAM,
  RouterSyncEvent,
  agentEndpointSubject,
  agentIdentity,
  routerNodeFilter,
} from '@dyad/contracts';
import { FAMILIES } from '@dyad/netaddr';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { afterAll, beforeAll, describe, expect, it, test, vi } from 'vitest';
import { kubeletNodeFiles } from '../src/kubelet-mode.ts';
import { mountNsDir, mountNsFile } from '../src/node-mounts.ts';
import { listNetns } from '../src/sys.ts';
import { TestLab, fullMatrix, labRequired, labSkipReason, matrix } from './helpers.ts';
import type { ProbeLine } from './helpers.ts';
import { HeldConnection, probeLoop, watchAgents } from './rollout.ts';

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
  }, 900_000);

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
    // the conflist containerd read is the one the chart's install-cni wrote, of its version
    const conflist = JSON.parse(
      readFileSync(
        join(kubeletNodeFiles(lab.paths, 'node-1').cniConfDir, '05-dyad.conflist'),
        'utf8',
      ),
    ) as { cniVersion: string; plugins: Array<{ type: string }> };
    expect(conflist.cniVersion).toBe('1.0.0');
    expect(conflist.plugins.map((p) => p.type)).toEqual(['dyad-cni']);
  });

  it('Dyad runs as helm installed it: agents per node, services, NATS, all from the images', () => {
    const releases = JSON.parse(
      execFileSync(join(lab.paths.root, 'tools', 'bin', 'helm'), ['list', '-A', '-o', 'json'], {
        env: lab.env,
        encoding: 'utf8',
      }),
    ) as Array<{ name: string; status: string }>;
    expect(releases.map((r) => [r.name, r.status])).toEqual([['dyad', 'deployed']]);
    const sys = JSON.parse(lab.kubectl(['-n', 'kube-system', 'get', 'pods', '-o', 'json'])) as {
      items: Array<{
        metadata: { ownerReferences?: Array<{ kind: string }>; labels: Record<string, string> };
        spec: { nodeName: string; containers: Array<{ image: string }> };
        status: { conditions?: Array<{ type: string; status: string }> };
      }>;
    };
    const byComponent = new Map<string, string[]>();
    for (const p of sys.items) {
      const c = p.metadata.labels['app.kubernetes.io/component'] ?? '?';
      expect(p.status.conditions?.some((x) => x.type === 'Ready' && x.status === 'True')).toBe(
        true,
      );
      byComponent.set(c, [...(byComponent.get(c) ?? []), p.spec.nodeName]);
    }
    expect(byComponent.get('agent')?.sort()).toEqual(NODES);
    expect(byComponent.get('nats')?.sort()).toEqual(NODES);
    expect(byComponent.get('ipam')).toHaveLength(2);
    for (const c of ['kube-bridge', 'router', 'policy']) expect(byComponent.get(c)).toHaveLength(1);
    expect(byComponent.get('nats-auth')).toHaveLength(2);
    // no Dyad process runs outside the cluster
    expect(
      lab
        .state()
        .processes.map((p) => p.name)
        .filter((n) => /^(agent|ipam|router|policy|kube-bridge|nats-auth)/.test(n)),
    ).toEqual([]);
  });

  it('every pod reaches every other pod over TCP, UDP and ICMP in both families', async () => {
    const lines = matrix(refs, PORT, ['IPv4', 'IPv6'], ['TCP', 'UDP', 'ICMP']);
    expect(lines).toHaveLength(6 * 5 * 2 * 3);
    const { failures } = await fullMatrix(lab, lines);
    expect(failures).toEqual([]);
  });

  /** Cross-node probes of both families and every protocol, and held TCP connections. */
  function crossNode(): { lines: ProbeLine[]; held: Array<{ from: string; to: string }> } {
    const pairs = [
      ['default/k-1', 'default/k-2'],
      ['default/k-2', 'default/k-3'],
      ['default/k-3', 'default/k-4'],
    ] as const;
    const lines: ProbeLine[] = pairs.flatMap(([from, to]) =>
      FAMILIES.flatMap((family) =>
        (['TCP', 'UDP', 'ICMP'] as const).map((protocol) => ({
          from,
          to,
          port: PORT,
          protocol,
          family,
        })),
      ),
    );
    return { lines, held: pairs.map(([from, to]) => ({ from, to })) };
  }

  async function openHeld(
    held: ReadonlyArray<{ from: string; to: string }>,
  ): Promise<HeldConnection[]> {
    const records = new Map(lab.pods().map((p) => [`${p.namespace}/${p.name}`, p]));
    const out: HeldConnection[] = [];
    for (const { from, to } of held) {
      const src = records.get(from);
      const dst = records.get(to);
      if (src === undefined || dst === undefined) throw new Error(`no record of ${from} or ${to}`);
      for (const ip of dst.podIPs) out.push(await HeldConnection.open(src.netns, ip, PORT));
    }
    return out;
  }

  /**
   * Runs `rollout` (it returns when the agents' rollout is complete) under a probe loop, a watch
   * of the agents and held connections. The agent restart window is zero: the datapath's maps
   * stay pinned and its programs attached while an agent restarts, so no probe between running
   * pods may fail at all, and no held connection may close or lose an echo.
   */
  async function underRollout(rollout: () => Promise<void>): Promise<Set<string>> {
    const { lines, held } = crossNode();
    const before = new Set(
      (
        JSON.parse(
          lab.kubectl([
            '-n',
            'kube-system',
            'get',
            'pods',
            '-l',
            'app.kubernetes.io/component=agent',
            '-o',
            'json',
          ]),
        ) as {
          items: Array<{ metadata: { uid: string } }>;
        }
      ).items.map((p) => p.metadata.uid),
    );
    const conns = await openHeld(held);
    let finished = false;
    const [probes, agents] = await Promise.all([
      probeLoop(lab, lines, () => finished),
      watchAgents(lab, () => finished),
      rollout().finally(() => (finished = true)),
    ]);
    const results = await Promise.all(conns.map((c) => c.finish()));
    expect(probes.failures).toEqual([]);
    expect(probes.rounds).toBeGreaterThan(1);
    for (const r of results) {
      expect(r.closed).toBe('');
      expect(r.sent).toBeGreaterThan(0);
      expect(r.echoed).toBe(r.sent);
    }
    // one node at a time: never two nodes without a ready agent
    expect(agents.maxNodesWithoutReadyAgent).toBe(1);
    const fresh = [...agents.uidsSeen].filter((u) => !before.has(u));
    expect(fresh.length).toBeGreaterThanOrEqual(NODES.length);
    return before;
  }

  it('kubectl rollout restart daemonset/dyad-agent: probes all connect, connections survive', async () => {
    await underRollout(async () => {
      await lab.kubectlAsync(['-n', 'kube-system', 'rollout', 'restart', 'daemonset/dyad-agent']);
      await lab.kubectlAsync([
        '-n',
        'kube-system',
        'rollout',
        'status',
        'daemonset/dyad-agent',
        '--timeout=300s',
      ]);
    });
  }, 400_000);

  it('helm upgrade to another image rolls the agents one node at a time', async () => {
    // the image again under another tag in every node's containerd: a rebuilt image as the
    // kubelet sees one (a new reference to pull, here from the node's store)
    for (const node of NODES) {
      execFileSync('ctr', [
        '--address',
        kubeletNodeFiles(lab.paths, node).containerdSocket,
        '--namespace',
        'k8s.io',
        'images',
        'tag',
        '--force',
        'docker.io/library/dyad:0.1.0',
        'docker.io/library/dyad:0.1.0-rebuilt',
      ]);
    }
    await underRollout(async () => {
      await lab.toolAsync('helm', [
        'upgrade',
        'dyad',
        join(lab.paths.root, 'deploy'),
        '-n',
        'kube-system',
        '--reuse-values',
        '--set',
        'image.tag=0.1.0-rebuilt',
      ]);
      await lab.kubectlAsync([
        '-n',
        'kube-system',
        'rollout',
        'status',
        'daemonset/dyad-agent',
        '--timeout=300s',
      ]);
    });
    const images = lab
      .kubectl([
        '-n',
        'kube-system',
        'get',
        'pods',
        '-l',
        'app.kubernetes.io/component=agent',
        '-o',
        'jsonpath={.items[*].spec.containers[0].image}',
      ])
      .split(' ');
    expect(images).toEqual(NODES.map(() => 'dyad:0.1.0-rebuilt'));
  }, 400_000);

  it("node-1's agent token, as its kubelet projected it, cannot publish node-2's agent records: the server refuses", async () => {
    const agents = JSON.parse(
      lab.kubectl([
        '-n',
        'kube-system',
        'get',
        'pods',
        '-l',
        'app.kubernetes.io/component=agent',
        '--field-selector',
        'spec.nodeName=node-1',
        '-o',
        'json',
      ]),
    ) as { items: Array<{ metadata: { uid: string } }> };
    const uid = agents.items[0]?.metadata.uid ?? '';
    // the kubelet's tmpfs of the projected volume is mounted in node-1's mount namespace
    const tokenPath = join(
      kubeletNodeFiles(lab.paths, 'node-1').kubeletRoot,
      'pods',
      uid,
      'volumes',
      'kubernetes.io~projected',
      'nats-token',
      'token',
    );
    const token = execFileSync(
      'nsenter',
      [`--mount=${mountNsFile(prefix, 'node-1')}`, 'cat', tokenPath],
      { encoding: 'utf8' },
    ).trim();
    expect(token.split('.')).toHaveLength(3);
    const dir = mkdtempSync(join(tmpdir(), 'dyad-kubelet-token-'));
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, token, { mode: 0o600 });
    const refused: Array<{ subject: unknown; operation: unknown }> = [];
    const base = createLogger({ service: 'kubelet-test', level: 'silent' });
    const logger: BusLogger = {
      debug: (o, m) => base.debug(o, m),
      info: (o, m) => base.info(o, m),
      warn: (o, m) => base.warn(o, m),
      error: (o, m) => {
        const f = o as { subject?: unknown; operation?: unknown };
        if (m === 'NATS refused: permission violation') {
          refused.push({ subject: f.subject, operation: f.operation });
        }
      },
    };
    const s = lab.state();
    const bus = await connectBus({
      servers: (s.natsUrl ?? '').split(','),
      name: AGENT_SERVICE,
      tokenFile,
      identity: agentIdentity('node-1'),
      ...(s.natsCa === undefined ? {} : { caFile: s.natsCa }),
      logger,
      registry: createMetrics({ processMetrics: false }),
      reconnect: { maxAttempts: 0 },
      connectTimeoutMs: 10_000,
    });
    try {
      // admitted as node-1's agent: it reads node-1's routes...
      const own = await bus.snapshot([RouterSyncEvent], {
        stream: ROUTER_STREAM,
        filterSubjects: [routerNodeFilter('node-1')],
      });
      expect(own.size).toBeGreaterThan(0);
      // ...and not node-2's
      await expect(
        bus.snapshot([RouterSyncEvent], {
          stream: ROUTER_STREAM,
          filterSubjects: [routerNodeFilter('node-2')],
        }),
      ).rejects.toThrow();
      // a forged endpoint record in node-2's name: refused by the server, never stored
      const subject = agentEndpointSubject('node-2', 'forged', 'eth0');
      await expect(
        bus.jsPublish(
          EndpointReport,
          subject,
          {
            op: 'upsert',
            endpoint: {
              node: 'node-2',
              containerId: 'forged',
              ifName: 'eth0',
              endpointId: 1,
              network: 'dyad',
              pod: { namespace: 'default', name: 'forged' },
              ipv4: '198.18.0.10',
              mac: '0a:00:00:00:00:01',
              hostIfName: 'dyhforged',
              hostIfindex: 5,
              hostMac: '0e:00:00:00:00:01',
              identity: 0,
              policy: { ingress: 'disabled', egress: 'disabled' },
              createdAt: '2025-01-01T00:00:00.000Z',
            },
          },
          { timeoutMs: 5_000 },
        ),
      ).rejects.toThrow(PublishError);
      await vi.waitFor(() =>
        expect(refused).toContainEqual(expect.objectContaining({ subject, operation: 'publish' })),
      );
    } finally {
      await bus.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

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

  /**
   * What Dyad has on a node, by kind, as the node sees it (its own mount namespace's directories,
   * its netns): the conflist and dyad-cni in its CNI directories, the agent's /run/dyad and
   * /var/lib/dyad (mount points of the lab's per-node directories: "gone" is empty), pins under
   * its bpffs, Dyad's programs on its uplink's tc, and devices named with the run's veth prefix.
   */
  function dyadOnNode(node: string): Record<string, string[]> {
    const rec = lab.state().nodes.find((n) => n.name === node);
    if (rec === undefined) throw new Error(`no node ${node}`);
    const f = kubeletNodeFiles(lab.paths, node, rec.pinDir);
    const host = (target: string): string => {
      const b = f.binds.find((x) => x.target === target);
      if (b === undefined) throw new Error(`no ${target} on ${node}`);
      return b.source;
    };
    const list = (dir: string): string[] =>
      existsSync(dir) ? readdirSync(dir, { recursive: true }).map(String) : [];
    const tc = execFileSync(
      'tc',
      ['-n', rec.netns, 'filter', 'show', 'dev', rec.uplink, 'ingress'],
      { encoding: 'utf8' },
    );
    const links = execFileSync('ip', ['-n', rec.netns, '-o', 'link', 'show'], {
      encoding: 'utf8',
    });
    return {
      cni: ['05-dyad.conflist', 'dyad-cni'].filter(
        (n) => existsSync(join(f.cniConfDir, n)) || existsSync(join(f.cniBinDir, n)),
      ),
      runDyad: list(host('/run/dyad')),
      varLibDyad: list(host('/var/lib/dyad')),
      pins: list(rec.pinDir),
      tc: tc.split('\n').filter((l) => /\bbpf\b/.test(l)),
      devices: links
        .split('\n')
        .map((l) => l.split(': ')[1]?.split('@')[0] ?? '')
        .filter((name) => name.startsWith(prefix)),
    };
  }

  it('helm uninstall takes Dyad off every node: conflist, plugin, files, pins, programs, devices', async () => {
    // the same look finds all of it while Dyad is installed (each node still runs a pod)
    for (const node of NODES) {
      const before = dyadOnNode(node);
      for (const [kind, found] of Object.entries(before))
        expect(found.length, `${node} ${kind} before`).toBeGreaterThan(0);
      expect(before['cni']?.sort()).toEqual(['05-dyad.conflist', 'dyad-cni']);
    }
    await lab.toolAsync('helm', [
      'uninstall',
      'dyad',
      '-n',
      'kube-system',
      '--wait',
      '--timeout',
      '300s',
    ]);
    expect(
      JSON.parse(await lab.toolAsync('helm', ['list', '-A', '-o', 'json'])) as unknown[],
    ).toEqual([]);
    for (const node of NODES) {
      expect(dyadOnNode(node), node).toEqual({
        cni: [],
        runDyad: [],
        varLibDyad: [],
        pins: [],
        tc: [],
        devices: [],
      });
    }
  }, 400_000);

  it('down leaves no namespace, mount or containerd state behind', async () => {
    await lab.down();
    expect(listNetns().filter((n) => n.startsWith(`${prefix}-`))).toEqual([]);
    // the nodes' mount namespaces and the pins under the run's prefix (the nodes' /sys/fs/bpf)
    expect(existsSync(mountNsDir(prefix))).toBe(false);
    expect(existsSync(`/sys/fs/bpf/${prefix}`)).toBe(false);
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((l) => l.includes(lab.paths.dir));
    expect(mounts).toEqual([]);
  });
});
