// dyad-cni (C) against the agent's socket server with a fake backend: the wire format, exit
// codes, and what the binary answers by itself when the agent is away.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startInMemoryTracing } from '@dyad/telemetry';
import { kernelRequired } from '@dyad/testbed';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handleCni } from '../src/cni/handler.ts';
import type { CniBackend } from '../src/cni/handler.ts';
import type { AddRequest } from '../src/cni/request.ts';
import { startCniServer } from '../src/cni/server.ts';
import type { CniServer } from '../src/cni/server.ts';
import { SUPPORTED_VERSIONS } from '../src/cni/spec.ts';
import type { Endpoint } from '../src/endpoint.ts';
import { DYAD_CNI, buildSkipReason, ensureCniBuilt } from './helpers/build.ts';

const skip = buildSkipReason();
if (skip && kernelRequired()) it('dyad-cni must be buildable', () => expect.fail(skip));

const seen: AddRequest[] = [];
const backend: CniBackend = {
  add(req) {
    seen.push(req);
    return Promise.resolve({
      containerId: req.containerId,
      ifName: req.ifName,
      network: req.conf.name,
      netns: req.netns,
      pod: req.pod,
      endpointId: 1,
      ipv4: { address: '198.18.1.5', cidr: '198.18.1.0/24', gateway: '198.18.1.1' },
      mac: '0a:00:00:00:00:01',
      hostIfName: 'dyx',
      hostIfindex: 3,
      hostMac: '0e:00:00:00:00:01',
      mtu: 1500,
      identity: 3,
      flags: 0,
      createdAt: new Date().toISOString(),
    } satisfies Endpoint);
  },
  async del() {},
  async check() {},
  async gc() {},
  status: () => ({ ready: true, details: '' }),
};

/** Runs dyad-cni asynchronously: the server answering it lives in this same event loop. */
function runCni(
  env: Record<string, string>,
  stdin: string,
): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      DYAD_CNI,
      [],
      { env, encoding: 'utf8', timeout: 20_000 },
      (err, stdout) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout });
      },
    );
    child.stdin?.end(stdin);
  });
}

describe.skipIf(skip !== undefined)('dyad-cni forwarder', () => {
  let dir: string;
  let server: CniServer | undefined;
  let sock: string;

  beforeAll(async () => {
    ensureCniBuilt();
    dir = mkdtempSync(join(tmpdir(), 'dyad-cni-'));
    sock = join(dir, 'cni.sock');
    server = await startCniServer(
      sock,
      (raw) => handleCni(raw, backend),
      () => undefined,
    );
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const env = (extra: Record<string, string> = {}) => ({
    CNI_COMMAND: 'ADD',
    CNI_CONTAINERID: 'c1',
    CNI_NETNS: '/run/netns/x',
    CNI_IFNAME: 'eth0',
    CNI_ARGS: 'K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p1',
    ...extra,
  });

  it('forwards env and stdin byte for byte and prints the agent result with exit 0', async () => {
    const conf = JSON.stringify({
      cniVersion: '1.1.0',
      name: 'dyad',
      type: 'dyad-cni',
      agentSocket: sock,
      note: 'quotes " backslash \\ tab \t newline \n unicode é ✓',
    });
    const r = await runCni(env(), conf);
    expect(r.code).toBe(0);
    const res = JSON.parse(r.stdout) as { ips: Array<{ address: string }> };
    expect(res.ips[0]?.address).toBe('198.18.1.5/32');
    const req = seen.at(-1);
    expect(req?.conf['note']).toBe('quotes " backslash \\ tab \t newline \n unicode é ✓');
    expect(req).toMatchObject({ containerId: 'c1', netns: '/run/netns/x', pod: { name: 'p1' } });
  });

  it("forwards the runtime's TRACEPARENT and TRACESTATE: the agent's span is their child", async () => {
    const tracing = startInMemoryTracing();
    try {
      const r = await runCni(
        env({
          DYAD_CNI_SOCKET: sock,
          CNI_CONTAINERID: 'c-traced',
          TRACEPARENT: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
          TRACESTATE: 'rt=1',
        }),
        JSON.stringify({ cniVersion: '1.1.0', name: 'dyad', type: 'dyad-cni' }),
      );
      expect(r.code).toBe(0);
      const span = tracing.spans().find((s) => s.name === 'cni ADD');
      expect(span?.spanContext().traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
      expect(span?.parentSpanContext?.spanId).toBe('00f067aa0ba902b7');
      expect(span?.spanContext().traceState?.get('rt')).toBe('1');
    } finally {
      await tracing.shutdown();
    }
  });

  it('DYAD_CNI_SOCKET wins over the config and the agent error comes back with exit 1', async () => {
    const r = await runCni(
      env({ DYAD_CNI_SOCKET: sock, CNI_NETNS: '' }),
      JSON.stringify({ cniVersion: '1.0.0', name: 'dyad', type: 'dyad-cni', agentSocket: '/nope' }),
    );
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ cniVersion: '1.0.0', code: 4 });
  });

  it('malformed stdin still reaches the agent, which answers 6', async () => {
    const r = await runCni(env({ DYAD_CNI_SOCKET: sock }), '{"cniVersion": "1.1.0",');
    expect(JSON.parse(r.stdout)).toMatchObject({ code: 6 });
  });

  it('an unreachable agent is code 11 naming the socket; STATUS says 50', async () => {
    const conf = JSON.stringify({
      cniVersion: '1.1.0',
      name: 'dyad',
      type: 'dyad-cni',
      agentSocket: join(dir, 'absent.sock'),
    });
    const add = await runCni(env(), conf);
    expect(add.code).toBe(1);
    const refused = JSON.parse(add.stdout) as { details?: string };
    expect(refused).toMatchObject({ cniVersion: '1.1.0', code: 11 });
    expect(refused.details).toContain('absent.sock');
    const status = await runCni({ CNI_COMMAND: 'STATUS' }, conf);
    expect(JSON.parse(status.stdout)).toMatchObject({ code: 50 });
  });

  it('VERSION without an agent lists the same versions as the agent', async () => {
    const r = await runCni(
      { CNI_COMMAND: 'VERSION', DYAD_CNI_SOCKET: join(dir, 'absent.sock') },
      '{"cniVersion":"1.0.0"}',
    );
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      cniVersion: '1.0.0',
      supportedVersions: [...SUPPORTED_VERSIONS],
    });
  });

  it('a second server on a live socket is refused', async () => {
    await expect(
      startCniServer(
        sock,
        (raw) => handleCni(raw, backend),
        () => undefined,
      ),
    ).rejects.toThrow(/another process/);
  });
});
