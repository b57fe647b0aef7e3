// The `dyad` agent commands against a stand-in agent API on a unix socket: tables, -o json,
// exit codes (0 ok, 1 not ready/failed, 2 usage, 3 agent unreachable).
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// Relative: the CLI is not a dependency of the agent, only its client.
import { run } from '../../../packages/cli/src/index.ts';

const ep = {
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
  policy: { ingress: 'enforcing', egress: 'disabled' },
  createdAt: '2025-01-01T00:00:00.000Z',
  phase: 'ready',
};
let ready = true;
const responses: Record<string, () => unknown> = {
  '/v1/status': () => ({
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
    writes: { endpoints: { syscalls: 1, written: 2, deleted: 0, unchanged: 0 } },
    cniSocket: '/run/dyad/cni.sock',
    pinDir: '/sys/fs/bpf/dyad/n1',
  }),
  '/v1/endpoints': () => [ep],
  '/v1/bpf/endpoints': () => [
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
  '/v1/bpf/ipcache': () => [
    { prefix: 'fd00:d1ad::5/128', identity: 65536, nodeId: 1, flags: 1 },
    { prefix: '198.18.1.0/24', identity: 3, nodeId: 0, nodeAddress: '198.19.0.2', flags: 0 },
  ],
  '/v1/bpf/ct': () => [
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
};

function io() {
  const out = new PassThrough();
  const err = new PassThrough();
  const text = (s: PassThrough) => (s.read() as Buffer | null)?.toString() ?? '';
  return { io: { stdout: out, stderr: err, env: {} }, out: () => text(out), err: () => text(err) };
}

describe('dyad agent commands', () => {
  let dir: string;
  let sock: string;
  let server: Server;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dyad-cli-'));
    sock = join(dir, 'agent.sock');
    server = createServer((req, res) => {
      const r = responses[new URL(req.url ?? '/', 'http://x').pathname];
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
    expect(await run(['status', '--socket', sock], t.io)).toBe(0);
    const out = t.out();
    expect(out).toMatch(/Agent:\s+Ready/);
    expect(out).toMatch(/NATS:\s+Connected/);
    expect(out).toContain('IPv4 198.18.0.0/24 gw 198.18.0.1, IPv6 fd00:d1ad::/120 gw fd00:d1ad::1');
    expect(out).toMatch(/dy_ipcache\s+1002\s+512000\s+0\.2%/);
    ready = false;
    try {
      const u = io();
      expect(await run(['status', '--socket', sock], u.io)).toBe(1);
      expect(u.out()).toContain('Not ready: not connected to NATS (IPAM)');
    } finally {
      ready = true;
    }
  });

  it('dyad endpoint list: an aligned table with both families, identity and policy', async () => {
    const t = io();
    expect(await run(['endpoint', 'list', '--socket', sock], t.io)).toBe(0);
    const [head, row] = t.out().trimEnd().split('\n');
    expect(head).toMatch(/^ID\s+POD\s+IPV4\s+IPV6\s+IDENTITY\s+POLICY \(IN\/OUT\)\s+STATE/);
    expect(row).toMatch(
      /^2\s+default\/web-0\s+198\.18\.0\.5\s+fd00:d1ad::5\s+65536\s+enforcing\/disabled\s+ready/,
    );
    // columns line up: every cell starts where its header does
    expect(row?.indexOf('198.18.0.5')).toBe(head?.indexOf('IPV4'));
    expect(row?.indexOf('fd00:d1ad::5')).toBe(head?.indexOf('IPV6'));
  });

  it('-o json prints what the agent answered', async () => {
    for (const [words, path] of [
      [['endpoint', 'list'], '/v1/endpoints'],
      [['bpf', 'endpoint', 'list'], '/v1/bpf/endpoints'],
      [['bpf', 'ipcache', 'list'], '/v1/bpf/ipcache'],
      [['bpf', 'ct', 'list'], '/v1/bpf/ct'],
      [['status'], '/v1/status'],
    ] as const) {
      const t = io();
      expect(await run([...words, '-o', 'json', '--socket', sock], t.io)).toBe(0);
      expect(JSON.parse(t.out())).toEqual(responses[path]?.());
    }
  });

  it('bpf tables decode flags, order by family and bracket IPv6 ports', async () => {
    const e = io();
    await run(['bpf', 'endpoint', 'list', '--socket', sock], e.io);
    const eo = e.out();
    expect(eo).toContain('enforce-ingress');
    expect(eo.indexOf('198.18.0.5')).toBeLessThan(eo.indexOf('fd00:d1ad::5'));
    const i = io();
    await run(['bpf', 'ipcache', 'list', '--socket', sock], i.io);
    const io4 = i.out();
    expect(io4.indexOf('198.18.1.0/24')).toBeLessThan(io4.indexOf('fd00:d1ad::5/128'));
    expect(io4).toMatch(/fd00:d1ad::5\/128\s+65536\s+1\s+-\s+local/);
    const c = io();
    await run(['bpf', 'ct', 'list', '--socket', sock], c.io);
    expect(c.out()).toMatch(
      /TCP\s+\[fd00:d1ad::5\]:40000\s+\[fd00:d1ad::6\]:80\s+egress\s+21599s\s+10\s+900\s+65536\s+seen-reply/,
    );
  });

  it('an agent that is not there is exit 3 with a hint; bad flags are exit 2', async () => {
    const t = io();
    expect(await run(['endpoint', 'list', '--socket', join(dir, 'none.sock')], t.io)).toBe(3);
    expect(t.err()).toContain('is the datapath agent running');
    const u = io();
    expect(await run(['bpf', 'ct', 'list', '--frobnicate'], u.io)).toBe(2);
    expect(u.err()).toContain('usage: dyad bpf ct list');
    const v = io();
    expect(await run(['status', '-o', 'yaml', '--socket', sock], v.io)).toBe(2);
  });

  it('DYAD_AGENT_SOCKET is the default socket', async () => {
    const t = io();
    expect(await run(['endpoint', 'list'], { ...t.io, env: { DYAD_AGENT_SOCKET: sock } })).toBe(0);
    expect(t.out()).toContain('web-0');
  });
});
