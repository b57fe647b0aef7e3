import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { FAMILIES } from '@dyad/netaddr';
import type { Family } from '@dyad/netaddr';
import { afterAll, beforeAll, describe, expect, it, test, vi } from 'vitest';
import { Prober } from '../src/probe.ts';
import { TestLab, labRequired, labSkipReason } from './helpers.ts';
import type { ProbeLine } from './helpers.ts';

// ClusterIP Services end to end: the lab's apiserver allocates the cluster IPs of each
// ipFamilyPolicy, its controller manager writes the EndpointSlices, kube-bridge and the router
// carry them to every node's agent, and a pod on another node reaches every cluster IP.
// NodePort Services: a node's own stack (a client beyond the node it reaches) and a pod connect
// to another node's address and nodePort, in each family.
const skip = labSkipReason();
if (skip && labRequired()) test('lab tier is required', () => expect.fail(skip));

const NS = 'svc';
const NODE_CLIENT = join(import.meta.dirname, 'node-client.ts');
const TARGET = 8080;
const PORT = 80;

const SERVICES = {
  'v4-single': { ipFamilyPolicy: 'SingleStack', ipFamilies: ['IPv4'] },
  'v6-single': { ipFamilyPolicy: 'SingleStack', ipFamilies: ['IPv6'] },
  'prefer-46': { ipFamilyPolicy: 'PreferDualStack', ipFamilies: ['IPv4', 'IPv6'] },
  'prefer-64': { ipFamilyPolicy: 'PreferDualStack', ipFamilies: ['IPv6', 'IPv4'] },
  'require-dual': { ipFamilyPolicy: 'RequireDualStack' },
} as const;

function manifest(): string {
  const pod = (name: string, node: string, app: string) => `apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: ${NS}, labels: { app: ${app} } }
spec:
  nodeName: ${node}
  containers: [{ name: main, image: none, ports: [{ name: echo, containerPort: ${TARGET} }, { name: echo-udp, containerPort: ${TARGET}, protocol: UDP }] }]
`;
  const svc = (name: string, spec: object, app: string) => `apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: ${NS} }
spec: ${JSON.stringify({
    ...spec,
    selector: { app },
    ports: [
      { name: 'tcp', port: PORT, targetPort: 'echo', protocol: 'TCP' },
      { name: 'udp', port: PORT, targetPort: 'echo-udp', protocol: 'UDP' },
    ],
  })}
`;
  return [
    pod('echo-0', 'node-2', 'echo'),
    pod('echo-1', 'node-3', 'echo'),
    pod('client', 'node-1', 'client'),
    ...Object.entries(SERVICES).map(([name, spec]) => svc(name, spec, 'echo')),
    svc('empty', { ipFamilyPolicy: 'RequireDualStack' }, 'nobody'),
    svc('np-cluster', { type: 'NodePort', ipFamilyPolicy: 'RequireDualStack' }, 'echo'),
    svc(
      'np-local',
      { type: 'NodePort', ipFamilyPolicy: 'RequireDualStack', externalTrafficPolicy: 'Local' },
      'echo',
    ),
  ].join('---\n');
}

describe.skipIf(skip !== undefined)('lab: ClusterIP Services of every ipFamilyPolicy', () => {
  const lab = new TestLab('services');
  const clusterIPs = new Map<string, string[]>();
  /** Service name -> protocol -> its nodePort. */
  const nodePorts = new Map<string, Map<string, number>>();

  beforeAll(async () => {
    await lab.up(['--nodes', '3']);
    lab.kubectl(['create', 'namespace', NS]);
    lab.kubectl(['apply', '-f', '-'], manifest());
    await lab.waitPods([`${NS}/echo-0`, `${NS}/echo-1`, `${NS}/client`], 2);
    const list = JSON.parse(lab.kubectl(['get', 'services', '-n', NS, '-o', 'json'])) as {
      items: Array<{
        metadata: { name: string };
        spec: {
          clusterIPs: string[];
          ports: Array<{ protocol: string; nodePort?: number }>;
        };
      }>;
    };
    for (const s of list.items) {
      clusterIPs.set(s.metadata.name, s.spec.clusterIPs);
      const np = new Map<string, number>();
      for (const p of s.spec.ports) if (p.nodePort !== undefined) np.set(p.protocol, p.nodePort);
      nodePorts.set(s.metadata.name, np);
    }
  }, 600_000);

  afterAll(async () => {
    await lab.down();
  }, 120_000);

  it('the apiserver allocated the cluster IPs each policy asks for, in order', () => {
    const fam = (name: string) =>
      (clusterIPs.get(name) ?? []).map((ip) => (ip.includes(':') ? 'IPv6' : 'IPv4'));
    expect(fam('v4-single')).toEqual(['IPv4']);
    expect(fam('v6-single')).toEqual(['IPv6']);
    expect(fam('prefer-46')).toEqual(['IPv4', 'IPv6']);
    expect(fam('prefer-64')).toEqual(['IPv6', 'IPv4']);
    expect(fam('require-dual')).toHaveLength(2);
  });

  it('every cluster IP answers TCP and UDP from a pod on another node, through backends of its family', async () => {
    const lines: ProbeLine[] = [];
    for (const name of Object.keys(SERVICES))
      for (const ip of clusterIPs.get(name) ?? [])
        for (const protocol of ['TCP', 'UDP'] as const)
          lines.push({
            from: `${NS}/client`,
            to: ip,
            port: PORT,
            protocol,
            family: ip.includes(':') ? 'IPv6' : 'IPv4',
          });
    expect(lines).toHaveLength(2 * 8);
    // the Services reach the agents a moment after the slices are written: retry until then
    let failed = lines;
    for (let round = 0; round < 60 && failed.length > 0; round++) {
      const replies = await lab.probeBatch(failed);
      failed = replies.filter((r) => r.result !== 'connected');
      if (failed.length > 0) await new Promise((r) => setTimeout(r, 500));
    }
    expect(failed).toEqual([]);

    const lb = lab.dyad(['bpf', 'lb', 'list', '--node', 'node-1', '-o', 'json']);
    expect(lb.status).toBe(0);
    const entries = JSON.parse(lb.stdout) as Array<{
      address: string;
      slots: Array<{ address?: string }>;
    }>;
    for (const ips of clusterIPs.values())
      for (const ip of ips) {
        const e = entries.find((x) => x.address === ip);
        expect(e, ip).toBeDefined();
        if (e?.slots.length === 0) continue; // the empty Service
        expect(e?.slots.map((s) => s.address?.includes(':'))).toEqual(
          e?.slots.map(() => ip.includes(':')),
        );
      }
  });

  it('a Service with no backend refuses at once in both families; a pod reaches itself (hairpin)', async () => {
    const prober = new Prober({ podsDir: lab.paths.pods });
    try {
      for (const ip of clusterIPs.get('empty') ?? [])
        for (const protocol of ['TCP', 'UDP'] as const) {
          const r = await prober.probeAddress(`${NS}/client`, ip, PORT, protocol, 5000);
          expect({ ip, protocol, ...r }).toMatchObject({ result: 'blocked', reason: 'refused' });
        }
      for (const ip of clusterIPs.get('require-dual') ?? []) {
        // echo-0 reaches one of echo-0 and echo-1 through its own Service: both must work
        const seen = new Set<string>();
        for (let i = 0; i < 8; i++) {
          const r = await prober.probeAddress(`${NS}/echo-0`, ip, PORT, 'TCP', 2000);
          seen.add(r.result);
        }
        expect([...seen]).toEqual(['connected']);
      }
    } finally {
      prober.close();
    }
  });

  it('a Deployment scaled down and up: new connections reach only the backends its slices hold', async () => {
    lab.kubectl(
      ['apply', '-f', '-'],
      `apiVersion: apps/v1
kind: Deployment
metadata: { name: web, namespace: ${NS} }
spec:
  replicas: 3
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers: [{ name: main, image: none, ports: [{ name: echo, containerPort: ${TARGET} }] }]
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: ${NS} }
spec:
  ipFamilyPolicy: RequireDualStack
  selector: { app: web }
  ports: [{ name: tcp, port: ${PORT}, targetPort: echo, protocol: TCP }]
`,
    );
    const svc = JSON.parse(lab.kubectl(['get', 'service', 'web', '-n', NS, '-o', 'json'])) as {
      spec: { clusterIPs: string[] };
    };
    const ips = svc.spec.clusterIPs;
    // what node-1's agent serves: the ready backends of each frontend
    const backends = (): number[] => {
      const r = lab.dyad(['service', 'list', '--node', 'node-1', '-o', 'json']);
      const list = JSON.parse(r.stdout || '[]') as Array<{
        namespace: string;
        name: string;
        frontends: Array<{ backends: Array<{ state: string }> }>;
      }>;
      const web = list.find((x) => x.namespace === NS && x.name === 'web');
      return web?.frontends.map((f) => f.backends.length) ?? [];
    };
    const allConnect = async (): Promise<void> => {
      const lines = ips.flatMap((ip) =>
        Array.from({ length: 12 }, () => ({
          from: `${NS}/client`,
          to: ip,
          port: PORT,
          protocol: 'TCP' as const,
          family: ip.includes(':') ? ('IPv6' as const) : ('IPv4' as const),
        })),
      );
      const replies = await lab.probeBatch(lines, 2000);
      expect(replies.filter((r) => r.result !== 'connected')).toEqual([]);
    };
    for (const replicas of [3, 1, 3]) {
      lab.kubectl(['scale', 'deployment', 'web', '-n', NS, `--replicas=${replicas}`]);
      await vi.waitFor(() => expect(backends()).toEqual([replicas, replicas]), {
        timeout: 120_000,
        interval: 500,
      });
      // a backend still in a table after its pod went would leave some of these unanswered
      await allConnect();
    }
  });

  /** One round trip from a node's own stack to another node's address and nodePort. */
  function fromNode(
    client: string,
    target: string,
    service: string,
    protocol: 'TCP' | 'UDP',
    family: Family,
  ): string {
    const nodes = lab.state().nodes;
    const from = nodes.find((n) => n.name === client);
    const address = nodes.find((n) => n.name === target)?.addresses[family];
    const port = nodePorts.get(service)?.get(protocol);
    if (!from || !address || !port) throw new Error(`no ${family} ${service} on ${target}`);
    const r = spawnSync(
      'nsenter',
      [
        `--net=/run/netns/${from.netns}`,
        process.execPath,
        NODE_CLIENT,
        protocol,
        address,
        String(port),
      ],
      { encoding: 'utf8' },
    );
    return (JSON.parse(r.stdout || '{}') as { result?: string }).result ?? `error ${r.stderr}`;
  }

  // echo-0 runs on node-2, echo-1 on node-3, none on node-1
  it('NodePort from a node address of each family: externalTrafficPolicy Cluster and Local', async () => {
    const PROTOCOLS = ['TCP', 'UDP'] as const;
    const cases = FAMILIES.flatMap((family) =>
      PROTOCOLS.flatMap((protocol) => [
        // Cluster on a node without a backend: SNAT to a backend on another node
        {
          client: 'node-2',
          target: 'node-1',
          service: 'np-cluster',
          protocol,
          family,
          want: 'connected',
        },
        {
          client: 'node-1',
          target: 'node-3',
          service: 'np-cluster',
          protocol,
          family,
          want: 'connected',
        },
        // Local on nodes with a backend of their own
        {
          client: 'node-1',
          target: 'node-2',
          service: 'np-local',
          protocol,
          family,
          want: 'connected',
        },
        {
          client: 'node-2',
          target: 'node-3',
          service: 'np-local',
          protocol,
          family,
          want: 'connected',
        },
      ]),
    );
    // the Services reach the agents a moment after the slices are written
    await vi.waitFor(
      () => {
        const got = cases.map((c) => ({
          ...c,
          want: fromNode(c.client, c.target, c.service, c.protocol, c.family),
        }));
        expect(got).toEqual(cases);
      },
      { timeout: 60_000, interval: 500 },
    );
    // a pod (svc/client on node-1) reaches other nodes' NodePorts too: from-container forwards
    // to the node address, whose from-netdev translates
    const nodes = lab.state().nodes;
    const fromPod: ProbeLine[] = FAMILIES.flatMap((family) =>
      PROTOCOLS.flatMap((protocol) =>
        (['np-cluster', 'np-local'] as const).map((service) => ({
          from: `${NS}/client`,
          to: nodes.find((n) => n.name === 'node-2')?.addresses[family] ?? '',
          port: nodePorts.get(service)?.get(protocol) ?? 0,
          protocol,
          family,
        })),
      ),
    );
    const replies = await lab.probeBatch(fromPod);
    expect(replies.filter((r) => r.result !== 'connected')).toEqual([]);
    expect(replies).toHaveLength(8);

    // Local on a node without a backend of its own: dropped (no answer, no refusal), as
    // kube-proxy does
    for (const family of FAMILIES)
      for (const protocol of PROTOCOLS)
        expect(fromNode('node-2', 'node-1', 'np-local', protocol, family)).toBe('timeout');

    const s = lab.dyad(['service', 'list', '--node', 'node-1']);
    expect(s.status).toBe(0);
    expect(s.stdout).toMatch(/svc\/np-local\s+\S+:\d+\s+TCP\s+NodePort\s+\(none here: dropped\)/);
  });

  it('dyad service list shows each Service with its frontends and backends', () => {
    const s = lab.dyad(['service', 'list', '--node', 'node-1', '-o', 'json']);
    expect(s.status).toBe(0);
    const list = JSON.parse(s.stdout) as Array<{
      namespace: string;
      name: string;
      frontends: Array<{ backends: unknown[] }>;
    }>;
    const mine = list
      .filter((x) => x.namespace === NS)
      .map((x) => x.name)
      .sort();
    expect(mine).toEqual(
      [...Object.keys(SERVICES), 'empty', 'np-cluster', 'np-local', 'web'].sort(),
    );
    const dual = list.find((x) => x.name === 'require-dual');
    // 2 cluster IPs x 2 ports, 2 backends each
    expect(dual?.frontends.map((f) => f.backends.length)).toEqual([2, 2, 2, 2]);
  });
});
