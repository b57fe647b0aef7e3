// The `dyad` agent commands against a stand-in agent API on a unix socket: tables, -o
// json|yaml|wide, --agent-socket/--socket/--node, and exit codes (0 ok, 1 not ready or a
// contract mismatch, 2 usage, 3 agent unreachable). The stand-in's answers are typed by the API
// contract in @dyad/contracts, so it cannot drift from what the real agent must send.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { AgentApi } from '@dyad/contracts';
import type { AgentApiBody, AgentApiName, AgentEndpointValue } from '@dyad/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { Exit, run } from '../src/index.ts';
import type { Plugin } from '../src/index.ts';

const ep: AgentEndpointValue = {
  node: 'n1',
  containerId: 'abcdef0123456789',
  ifName: 'eth0',
  endpointId: 2,
  network: 'dyad',
  pod: { namespace: 'default', name: 'web-0' },
  ipv4: '198.18.0.5',
  ipv6: 'fd00:d1ad::5',
  mac: '0a:00:00:00:00:01',
  hostIfName: 'dy0123456789abc',
  hostIfindex: 7,
  hostMac: '0e:00:00:00:00:01',
  identity: 65536,
  netns: '/run/netns/web-0',
  policy: { ingress: 'enforcing', egress: 'disabled' },
  createdAt: '2025-01-01T00:00:00.000Z',
  phase: 'ready',
};

let ready = true;
/** What the stand-in answers per path; a test may break one to see the CLI refuse it. */
const answers: { [K in AgentApiName]: () => AgentApiBody<K> } = {
  version: () => ({ version: '0.1.0', api: 'v1', node: 'n1', runtime: 'v24.0.0' }),
  status: () => ({
    node: 'n1',
    ready,
    details: ready ? 'ready' : 'not connected to NATS (IPAM)',
    uptimeS: 12,
    nats: { connected: ready, servers: ['nats://127.0.0.1:4222'] },
    families: [
      { family: 'IPv4', enabled: true, cidr: '198.18.0.0/24', gateway: '198.18.0.1' },
      { family: 'IPv6', enabled: true, cidr: 'fd00:d1ad::/120', gateway: 'fd00:d1ad::1' },
    ],
    endpoints: { ready: 1, pending: 0 },
    maps: [
      { name: 'dy_endpoints', entries: 2, maxEntries: 65536 },
      { name: 'dy_ipcache', entries: 1002, maxEntries: 512000 },
    ],
    writes: { endpoints: { syscalls: 1, written: 2, deleted: 0, unchanged: 3 } },
    cniSocket: '/run/dyad/cni.sock',
    pinDir: '/sys/fs/bpf/dyad/n1',
  }),
  endpoints: () => [ep],
  bpfEndpoints: () => [
    {
      address: 'fd00:d1ad::5',
      ifindex: 7,
      endpointId: 2,
      identity: 65536,
      flags: 1,
      mac: ep.mac,
      nodeMac: ep.hostMac,
    },
    {
      address: '198.18.0.5',
      ifindex: 7,
      endpointId: 2,
      identity: 65536,
      flags: 1,
      mac: ep.mac,
      nodeMac: ep.hostMac,
    },
  ],
  bpfIpcache: () => [
    { prefix: 'fd00:d1ad::5/128', identity: 65536, nodeId: 1, flags: 1 },
    { prefix: '198.18.1.0/24', identity: 3, nodeId: 0, nodeAddress: '198.19.0.2', flags: 0 },
  ],
  bpfPolicy: () => [],
  bpfCt: () => [
    {
      src: 'fd00:d1ad::5',
      dst: 'fd00:d1ad::6',
      sport: 40000,
      dport: 80,
      proto: 6,
      direction: 'egress',
      expiresInS: 21599.2,
      packets: 10,
      bytes: 900,
      srcIdentity: 65536,
      flags: 1,
    },
  ],
  bpfMetrics: () => [],
  services: () => [
    {
      namespace: 'shop',
      name: 'web',
      frontends: [
        {
          family: 'IPv6',
          address: 'fd00:96::a',
          port: 80,
          protocol: 'TCP',
          portName: 'http',
          backends: [
            { address: 'fd00:d1ad::5', port: 8080, state: 'ready' },
            { address: 'fd00:d1ad::6', port: 8080, state: 'terminating' },
          ],
        },
        {
          family: 'IPv4',
          address: '198.18.96.10',
          port: 80,
          protocol: 'TCP',
          portName: 'http',
          backends: [],
        },
        {
          family: 'IPv4',
          address: '198.19.7.11',
          port: 30080,
          protocol: 'TCP',
          portName: 'http',
          backends: [{ address: '198.18.1.5', port: 8080, state: 'ready' }],
          type: 'NodePort',
          externalTrafficPolicy: 'Local',
        },
        {
          family: 'IPv6',
          address: 'fd00:19:7::b',
          port: 30080,
          protocol: 'TCP',
          portName: 'http',
          backends: [],
          type: 'NodePort',
          externalTrafficPolicy: 'Local',
        },
      ],
      affinityTimeoutSeconds: 30,
      internalTrafficPolicy: 'Cluster',
      problems: [{ code: 'port-name-unresolved', message: 'x' }],
    },
  ],
  bpfLb: () => [
    {
      address: 'fd00:96::a',
      port: 80,
      protocol: 'TCP',
      id: 3,
      backends: 1,
      affinityTimeoutS: 30,
      flags: 1,
      slots: [{ backendId: 7, address: 'fd00:d1ad::5', port: 8080, backendFlags: 0, slots: 1021 }],
    },
    {
      address: '198.18.96.10',
      port: 80,
      protocol: 'UDP',
      id: 4,
      backends: 0,
      affinityTimeoutS: 0,
      flags: 0,
      slots: [],
    },
    {
      address: 'fd00:19:7::b',
      port: 30080,
      protocol: 'TCP',
      id: 5,
      backends: 0,
      affinityTimeoutS: 0,
      flags: 6,
      slots: [],
    },
  ],
};
/** Replaces a path's answer with anything at all (a newer agent, a broken one). */
const override = new Map<string, () => unknown>();

/** Output sinks that keep everything written, so a test may read them more than once. */
function io(env: Record<string, string> = {}) {
  const sink = () => {
    let text = '';
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        text += chunk.toString();
        done();
      },
    });
    return { stream, text: () => text };
  };
  const out = sink();
  const err = sink();
  return { io: { stdout: out.stream, stderr: err.stream, env }, out: out.text, err: err.text };
}

const noPlugins = { plugins: () => Promise.resolve([]) };

describe('dyad agent commands', () => {
  let dir: string;
  let sock: string;
  let server: Server;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dyad-cli-'));
    sock = join(dir, 'agent.sock');
    const byPath = new Map(
      (Object.keys(AgentApi) as AgentApiName[]).map((k) => [AgentApi[k].path, () => answers[k]()]),
    );
    server = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      const r = override.get(path) ?? byPath.get(path);
      res.writeHead(r ? 200 : 404, { 'content-type': 'application/json' });
      res.end(JSON.stringify(r ? r() : { error: 'no such path' }));
    });
    await new Promise<void>((resolve) => server.listen(sock, resolve));
  });
  afterAll(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('dyad status: health, NATS, families, map fill; exit 0 when ready, 1 when not', async () => {
    const t = io();
    expect(await run(['status', '--agent-socket', sock], t.io, noPlugins)).toBe(0);
    const out = t.out();
    expect(out).toMatch(/Agent:\s+Ready/);
    expect(out).toMatch(/NATS:\s+Connected/);
    expect(out).toContain('IPv4 198.18.0.0/24 gw 198.18.0.1, IPv6 fd00:d1ad::/120 gw fd00:d1ad::1');
    expect(out).toMatch(/dy_ipcache\s+1002\s+512000\s+0\.2%/);
    expect(out).not.toContain('UNCHANGED');
    ready = false;
    try {
      const u = io();
      expect(await run(['status', '--agent-socket', sock], u.io, noPlugins)).toBe(1);
      expect(u.out()).toContain('Not ready: not connected to NATS (IPAM)');
    } finally {
      ready = true;
    }
    const w = io();
    expect(await run(['status', '-o', 'wide', '--agent-socket', sock], w.io, noPlugins)).toBe(0);
    expect(w.out()).toMatch(
      /MIRROR\s+SYSCALLS\s+WRITTEN\s+DELETED\s+UNCHANGED\nendpoints\s+1\s+2\s+0\s+3/,
    );
  });

  it('dyad endpoint list: an aligned table with both families, identity and policy; wide adds more', async () => {
    const t = io();
    expect(await run(['endpoint', 'list', '--agent-socket', sock], t.io, noPlugins)).toBe(0);
    const [head, row] = t.out().trimEnd().split('\n');
    expect(head).toMatch(
      /^ID\s+POD\s+IPV4\s+IPV6\s+IDENTITY\s+POLICY \(IN\/OUT\)\s+STATE\s+HOST IF\s+CONTAINER$/,
    );
    expect(row).toMatch(
      /^2\s+default\/web-0\s+198\.18\.0\.5\s+fd00:d1ad::5\s+65536\s+enforcing\/disabled\s+ready\s+dy0123456789abc\(7\)\s+abcdef012345$/,
    );
    // columns line up: every cell starts where its header does
    expect(row?.indexOf('198.18.0.5')).toBe(head?.indexOf('IPV4'));
    expect(row?.indexOf('fd00:d1ad::5')).toBe(head?.indexOf('IPV6'));
    const w = io();
    expect(
      await run(['endpoint', 'list', '-o', 'wide', '--agent-socket', sock], w.io, noPlugins),
    ).toBe(0);
    expect(w.out()).toMatch(
      /CONTAINER\s+MAC\s+HOST MAC\s+MTU\s+NETNS\s+CREATED\n.*abcdef0123456789\s+0a:00:00:00:00:01\s+0e:00:00:00:00:01\s+-\s+\/run\/netns\/web-0\s+2025-01-01T00:00:00\.000Z/,
    );
  });

  it('-o json and -o yaml print what the agent answered', async () => {
    for (const [words, name] of [
      [['endpoint', 'list'], 'endpoints'],
      [['bpf', 'endpoint', 'list'], 'bpfEndpoints'],
      [['bpf', 'ipcache', 'list'], 'bpfIpcache'],
      [['bpf', 'ct', 'list'], 'bpfCt'],
      [['bpf', 'lb', 'list'], 'bpfLb'],
      [['service', 'list'], 'services'],
      [['status'], 'status'],
    ] as const) {
      const j = io();
      expect(await run([...words, '-o', 'json', '--agent-socket', sock], j.io, noPlugins)).toBe(0);
      expect(JSON.parse(j.out())).toEqual(answers[name]());
      const y = io();
      expect(await run([...words, '-o', 'yaml', '--agent-socket', sock], y.io, noPlugins)).toBe(0);
      expect(parseYaml(y.out())).toEqual(answers[name]());
    }
  });

  it('a field a newer agent added is kept in -o json; one it changed is refused with exit 1', async () => {
    override.set('/v1/endpoints', () => [{ ...ep, bandwidth: '10G' }]);
    try {
      const t = io();
      expect(
        await run(['endpoint', 'list', '-o', 'json', '--agent-socket', sock], t.io, noPlugins),
      ).toBe(0);
      expect(JSON.parse(t.out())).toEqual([{ ...ep, bandwidth: '10G' }]);
      override.set('/v1/endpoints', () => [
        { ...ep, endpointId: 'two', pod: { namespace: 'default' } },
      ]);
      const u = io();
      expect(await run(['endpoint', 'list', '--agent-socket', sock], u.io, noPlugins)).toBe(
        Exit.failed,
      );
      expect(u.out()).toBe('');
      expect(u.err()).toContain('does not match the API contract');
      expect(u.err()).toContain('[0].endpointId');
      expect(u.err()).toContain('[0].pod.name');
    } finally {
      override.clear();
    }
  });

  it('bpf tables decode flags, order by family and bracket IPv6 ports', async () => {
    const e = io();
    await run(['bpf', 'endpoint', 'list', '--agent-socket', sock], e.io, noPlugins);
    const eo = e.out();
    expect(eo).toContain('enforce-ingress');
    expect(eo.indexOf('198.18.0.5')).toBeLessThan(eo.indexOf('fd00:d1ad::5'));
    const i = io();
    await run(['bpf', 'ipcache', 'list', '--agent-socket', sock], i.io, noPlugins);
    const io4 = i.out();
    expect(io4.indexOf('198.18.1.0/24')).toBeLessThan(io4.indexOf('fd00:d1ad::5/128'));
    expect(io4).toMatch(/fd00:d1ad::5\/128\s+65536\s+1\s+-\s+local/);
    const c = io();
    await run(['bpf', 'ct', 'list', '--agent-socket', sock], c.io, noPlugins);
    expect(c.out()).toMatch(
      /TCP\s+\[fd00:d1ad::5\]:40000\s+\[fd00:d1ad::6\]:80\s+egress\s+21599s\s+10\s+900\s+65536\s+seen-reply/,
    );
  });

  it('service list and bpf lb list: one line per frontend or backend, NodePorts, refusal and states shown', async () => {
    const s = io();
    expect(await run(['service', 'list', '--agent-socket', sock], s.io, noPlugins)).toBe(0);
    expect(s.out()).toMatch(
      /shop\/web\s+\[fd00:96::a\]:80\s+TCP\s+ClusterIP\s+\[fd00:d1ad::5\]:8080, \[fd00:d1ad::6\]:8080 \(terminating\)\s+ClientIP 30s\s+Cluster\s+port-name-unresolved/,
    );
    expect(s.out()).toMatch(/shop\/web\s+198\.18\.96\.10:80\s+TCP\s+ClusterIP\s+\(none: refused\)/);
    expect(s.out()).toMatch(
      /shop\/web\s+198\.19\.7\.11:30080\s+TCP\s+NodePort\s+198\.18\.1\.5:8080\s+ClientIP 30s\s+Local/,
    );
    expect(s.out()).toMatch(
      /shop\/web\s+\[fd00:19:7::b\]:30080\s+TCP\s+NodePort\s+\(none here: dropped\)\s+ClientIP 30s\s+Local/,
    );
    const b = io();
    expect(await run(['bpf', 'lb', 'list', '--agent-socket', sock], b.io, noPlugins)).toBe(0);
    const out = b.out();
    expect(out).toMatch(/198\.18\.96\.10:80\s+UDP\s+4\s+\(no backend: refused\)/);
    expect(out).toMatch(
      /\[fd00:96::a\]:80\s+TCP\s+3\s+\[fd00:d1ad::5\]:8080\s+7\s+1021\s+affinity timeout=30s/,
    );
    expect(out).toMatch(
      /\[fd00:19:7::b\]:30080\s+TCP\s+5\s+\(no local backend: dropped\)\s+-\s+0\s+nodeport,local/,
    );
    expect(out.indexOf('198.18.96.10')).toBeLessThan(out.indexOf('fd00:96::a'));
  });

  it('an agent that is not there is exit 3 with a hint; bad flags are exit 2', async () => {
    const t = io();
    expect(
      await run(['endpoint', 'list', '--agent-socket', join(dir, 'none.sock')], t.io, noPlugins),
    ).toBe(3);
    expect(t.err()).toContain('is the datapath agent running');
    const u = io();
    expect(await run(['bpf', 'ct', 'list', '--frobnicate'], u.io, noPlugins)).toBe(2);
    expect(u.err()).toContain('Usage: dyad bpf ct list');
    const v = io();
    expect(await run(['status', '-o', 'xml', '--agent-socket', sock], v.io, noPlugins)).toBe(2);
  });

  it('the socket: --agent-socket, its alias --socket, else $DYAD_AGENT_SOCKET', async () => {
    const a = io();
    expect(await run(['endpoint', 'list', '--socket', sock], a.io, noPlugins)).toBe(0);
    expect(a.out()).toContain('web-0');
    const t = io({ DYAD_AGENT_SOCKET: sock });
    expect(await run(['endpoint', 'list'], t.io, noPlugins)).toBe(0);
    expect(t.out()).toContain('web-0');
    const both = io();
    expect(
      await run(['status', '--socket', sock, '--agent-socket', '/x'], both.io, noPlugins),
    ).toBe(2);
  });

  it('--node is that node or an error: the agent must say it is NAME’s', async () => {
    const t = io({ DYAD_AGENT_SOCKET: sock });
    expect(await run(['status', '--node', 'n1'], t.io, noPlugins)).toBe(0);
    const u = io({ DYAD_AGENT_SOCKET: sock });
    expect(await run(['endpoint', 'list', '--node', 'n2'], u.io, noPlugins)).toBe(Exit.usage);
    expect(u.err()).toContain(`--node n2: the agent at ${sock} is node n1's`);
    expect(u.out()).toBe('');
  });

  it('--node asks the plugins where the node’s agent is (the lab knows its nodes)', async () => {
    const asked: string[] = [];
    const lab: Plugin = {
      name: '@dyad/lab',
      commands: [],
      locateAgent: (node) => {
        asked.push(node);
        return node === 'n1'
          ? { socket: sock }
          : node === 'n9'
            ? { error: 'the lab has n1' }
            : undefined;
      },
    };
    const plugins = { plugins: () => Promise.resolve([lab]) };
    const t = io();
    expect(await run(['endpoint', 'list', '--node', 'n1'], t.io, plugins)).toBe(0);
    expect(t.out()).toContain('web-0');
    const u = io();
    expect(await run(['status', '--node', 'n9'], u.io, plugins)).toBe(Exit.usage);
    expect(u.err()).toContain('--node n9: the lab has n1');
    // An explicit socket is not looked up.
    expect(await run(['status', '--node', 'n1', '--agent-socket', sock], io().io, plugins)).toBe(0);
    expect(asked).toEqual(['n1', 'n9']);
  });

  it('dyad version: client and agent; exit 3 (client still printed) when no agent answers', async () => {
    const t = io();
    expect(await run(['version', '--agent-socket', sock], t.io, noPlugins)).toBe(0);
    expect(t.out()).toMatch(/^Client:\s+dyad \d+\.\d+\.\d+ \(node v\d+/);
    expect(t.out()).toMatch(/\nAgent:\s+0\.1\.0 on node n1, API v1 \(node v24\.0\.0\)\n$/);
    const j = io();
    expect(await run(['version', '-o', 'json', '--agent-socket', sock], j.io, noPlugins)).toBe(0);
    expect(JSON.parse(j.out())).toMatchObject({
      client: { version: expect.any(String) as unknown },
      agent: answers.version(),
    });
    const u = io();
    expect(await run(['version', '--agent-socket', join(dir, 'none.sock')], u.io, noPlugins)).toBe(
      3,
    );
    expect(u.out()).toMatch(/^Client:.*\nAgent:\s+unknown \(no agent socket/);
    const c = io();
    expect(
      await run(['version', '--client', '--agent-socket', join(dir, 'none.sock')], c.io, noPlugins),
    ).toBe(0);
    expect(c.out()).not.toContain('Agent');
  });
});
