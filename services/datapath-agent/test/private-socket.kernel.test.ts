// The agent's CNI and API unix sockets: 0600 from bind on, peers checked by SO_PEERCRED, idle
// clients cut off, connections capped. Root only: the refused peer is a process of another uid.
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kernelRequired } from '@dyad/testbed';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startApiServer } from '../src/api.ts';
import type { ApiServer, ApiSources } from '../src/api.ts';
import { startCniServer } from '../src/cni/server.ts';
import type { CniServer } from '../src/cni/server.ts';
import type { CniReply } from '../src/cni/handler.ts';
import { peerCredentials } from '../src/private-socket.ts';

const NOBODY = 65534;
const PYTHON = '/usr/bin/python3';
const skip =
  process.getuid?.() !== 0 ? 'needs root: the refused peer runs as another uid' : undefined;
if (skip && kernelRequired()) it('private sockets need root', () => expect.fail(skip));

/**
 * Connects to `path` as uid `uid`, sends `request` and reads until the server closes: what came
 * back, or `refused:<errno name>` when connect itself failed.
 */
function clientAs(uid: number, path: string, request: string): Promise<string> {
  const script = [
    'import socket, sys',
    's = socket.socket(socket.AF_UNIX)',
    'try:',
    '    s.connect(sys.argv[1])',
    'except OSError as e:',
    '    print("refused:" + type(e).__name__, end=""); sys.exit(0)',
    'try:',
    '    s.sendall(sys.argv[2].encode()); s.shutdown(socket.SHUT_WR)',
    'except OSError:',
    '    pass',
    'out = b""',
    'while True:',
    '    try:',
    '        b = s.recv(65536)',
    '    except OSError:',
    '        break',
    '    if not b: break',
    '    out += b',
    'print(out.decode(errors="replace"), end="")',
  ].join('\n');
  return new Promise((resolve, reject) => {
    execFile(
      PYTHON,
      ['-c', script, path, request],
      { uid, gid: uid, encoding: 'utf8', timeout: 20_000 },
      (err, stdout) => {
        if (err === null) resolve(stdout);
        else reject(new Error(`python client failed: ${err.message}`, { cause: err }));
      },
    );
  });
}

function openIdle(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

const closed = (s: Socket) => new Promise<void>((r) => (s.closed ? r() : s.once('close', r)));

describe.skipIf(skip !== undefined)("the agent's unix sockets", () => {
  const teardown: (() => unknown)[] = [];
  let dir: string;
  let cni: CniServer;
  let api: ApiServer;
  const handled: string[] = [];
  const refused: string[] = [];
  const apiRefused: string[] = [];
  let umaskBefore: number;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dyad-sock-'));
    // The directory lets everyone through, so only the sockets' own checks stand in the way.
    chmodSync(dir, 0o755);
    umaskBefore = process.umask(0o022);
    process.umask(umaskBefore);
    cni = await startCniServer(
      join(dir, 'cni.sock'),
      (raw): Promise<CniReply> => {
        handled.push(raw);
        return Promise.resolve({ exitCode: 0, stdout: `echo:${raw}` });
      },
      () => undefined,
      { maxConnections: 2, idleTimeoutMs: 300, onRefused: (why) => refused.push(why) },
    );
    teardown.push(() => cni.close());
    const sources = {
      node: 'node-1',
      datapath: { loaded: { maps: {} } },
    } as unknown as ApiSources;
    api = await startApiServer(join(dir, 'api.sock'), sources, {
      onRefused: (why) => apiRefused.push(why),
    });
    teardown.push(() => api.close());
  });

  afterAll(async () => {
    for (const undo of teardown.reverse()) await undo();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates both sockets 0600 and leaves the process umask as it was', () => {
    expect(statSync(cni.path).mode & 0o777).toBe(0o600);
    expect(statSync(api.path).mode & 0o777).toBe(0o600);
    const now = process.umask(0o022);
    process.umask(now);
    expect(now).toBe(umaskBefore);
  });

  it('another uid cannot even connect while the mode holds', async () => {
    expect(await clientAs(NOBODY, cni.path, 'x')).toBe('refused:PermissionError');
    expect(await clientAs(NOBODY, api.path, 'GET /v1/version HTTP/1.0\r\n\r\n')).toBe(
      'refused:PermissionError',
    );
  });

  it('a peer of another uid that gets through is refused by its credentials, unserved', async () => {
    chmodSync(cni.path, 0o666);
    chmodSync(api.path, 0o666);
    try {
      expect(await clientAs(NOBODY, cni.path, 'forbidden')).toBe('');
      expect(handled).not.toContain('forbidden');
      expect(refused.some((r) => r.includes(`uid ${NOBODY} is not allowed`))).toBe(true);
      expect(await clientAs(NOBODY, api.path, 'GET /v1/version HTTP/1.0\r\n\r\n')).toBe('');
      expect(apiRefused.some((r) => r.includes(`uid ${NOBODY} is not allowed`))).toBe(true);
      // Root is served.
      expect(await clientAs(0, cni.path, 'allowed')).toBe('0\necho:allowed');
      expect(await clientAs(0, api.path, 'GET /v1/version HTTP/1.0\r\n\r\n')).toContain(
        '"node":"node-1"',
      );
    } finally {
      chmodSync(cni.path, 0o600);
      chmodSync(api.path, 0o600);
    }
  });

  it('reads the peer credentials the kernel recorded', async () => {
    const s = await openIdle(cni.path);
    try {
      const cred = peerCredentials(s);
      // The server's end sees this process; this end sees the same process (it serves itself).
      expect(cred).toEqual({ pid: process.pid, uid: 0, gid: 0 });
    } finally {
      s.destroy();
    }
  });

  it('caps connections and cuts off a client idle while sending its request', async () => {
    refused.length = 0;
    const a = await openIdle(cni.path);
    const b = await openIdle(cni.path);
    const c = await openIdle(cni.path);
    // The third is over the cap: closed by the server without a word.
    await closed(c);
    await vi.waitFor(() => expect(refused).toContain('more than 2 connections'));
    // The other two send nothing: the idle timeout ends them.
    await Promise.all([closed(a), closed(b)]);
    expect(refused.filter((r) => r === 'idle while sending its request')).toHaveLength(2);
    // And the slots are free again.
    expect(await clientAs(0, cni.path, 'after')).toBe('0\necho:after');
  });
});
