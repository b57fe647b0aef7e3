import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '@dyad/cli';
import { freePorts, repoRoot } from '@dyad/testbed';
import { plugin } from '../src/dyad-plugin.ts';

// `dyad lab probe` and `dyad lab exec` (the lab's plugin commands, through dyad's dispatcher and
// parser) against a real stand-in process (the one lab pods run), here in this machine's own
// netns on loopback: pod records point a/src at its control socket and b/dst at 127.0.0.1 /
// ::1, so no root and no namespaces are needed.
describe('dyad lab probe', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dyad-cli-lab-'));
  let standin: ChildProcess | undefined;
  let open = 0;
  let closed = 0;

  function io(stdin = '') {
    const out = new PassThrough();
    const err = new PassThrough();
    const text = (s: PassThrough) => (s.read() as Buffer | null)?.toString() ?? '';
    return {
      io: { stdout: out, stderr: err, env: { DYAD_LAB_DIR: dir }, stdin: Readable.from([stdin]) },
      commands: { commands: [], plugins: () => Promise.resolve([plugin]) },
      out: () => text(out),
      err: () => text(err),
    };
  }

  beforeAll(async () => {
    [open = 0, closed = 0] = await freePorts(2);
    const control = join(dir, 'src.sock');
    const child = spawn(
      process.execPath,
      [join(repoRoot(), 'lab/src/standin.ts'), control, JSON.stringify([open])],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    standin = child;
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      child.on('exit', (code) => reject(new Error(`stand-in exited ${code}`)));
    });
    mkdirSync(join(dir, 'pods'));
    const record = (name: string, podIPs: string[], ctl: string) => ({
      namespace: 'lab',
      name,
      uid: `uid-${name}`,
      node: 'node-1',
      netns: 'none',
      containerId: 'c',
      podIPs,
      ports: [{ name: 'echo', port: open, protocol: 'TCP' }],
      control: ctl,
      standinPid: child.pid ?? 0,
      runningAt: new Date().toISOString(),
    });
    writeFileSync(
      join(dir, 'pods', 'lab_src.json'),
      JSON.stringify(record('src', ['127.0.0.1', '::1'], control)),
    );
    writeFileSync(
      join(dir, 'pods', 'lab_dst.json'),
      JSON.stringify(record('dst', ['127.0.0.1', '::1'], control)),
    );
    writeFileSync(
      join(dir, 'pods', 'lab_v4only.json'),
      JSON.stringify(record('v4only', ['127.0.0.1'], control)),
    );
  });

  afterAll(() => {
    standin?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it.each([
    ['TCP', 'IPv4'],
    ['TCP', 'IPv6'],
    ['UDP', 'IPv4'],
    ['UDP', 'IPv6'],
  ])('%s over %s to an answering port prints connected and exits 0', async (protocol, family) => {
    const t = io();
    const args = [
      'lab',
      'probe',
      'lab/src',
      'lab/dst',
      '--port',
      String(open),
      '--protocol',
      protocol,
      '--family',
      family,
    ];
    expect(await run(args, t.io, t.commands)).toBe(0);
    expect(t.out()).toBe('connected\n');
  });

  it('a named port is the target pod’s container port of that name', async () => {
    const t = io();
    const args = [
      'lab',
      'probe',
      'lab/src',
      'lab/dst',
      '--port',
      'echo',
      '--protocol',
      'TCP',
      '--family',
      'IPv4',
    ];
    expect(await run(args, t.io, t.commands)).toBe(0);
  });

  it('a port nobody answers prints blocked and exits 1 (TCP refused, UDP unanswered)', async () => {
    for (const protocol of ['TCP', 'UDP']) {
      const t = io();
      const args = [
        'lab',
        'probe',
        'lab/src',
        'lab/dst',
        `--port=${closed}`,
        `--protocol=${protocol}`,
        '--family=IPv6',
        '--timeout-ms=300',
      ];
      expect(await run(args, t.io, t.commands)).toBe(1);
      expect(t.out()).toBe('blocked\n');
    }
  });

  it('an unknown pod, a missing family or bad flags exit 2', async () => {
    const cases = [
      [
        'lab',
        'probe',
        'lab/src',
        'lab/nope',
        '--port',
        '80',
        '--protocol',
        'TCP',
        '--family',
        'IPv4',
      ],
      [
        'lab',
        'probe',
        'lab/src',
        'lab/v4only',
        '--port',
        '80',
        '--protocol',
        'TCP',
        '--family',
        'IPv6',
      ],
      [
        'lab',
        'probe',
        'lab/src',
        'lab/dst',
        '--port',
        '80',
        '--protocol',
        'SCTP',
        '--family',
        'IPv4',
      ],
      ['lab', 'probe', 'lab/src', '--port', '80', '--protocol', 'TCP', '--family', 'IPv4'],
      [
        'lab',
        'probe',
        'lab/src',
        'lab/dst',
        '--port',
        '80',
        '--protocol',
        'TCP',
        '--family',
        'IPv4',
        '--bogus',
        '1',
      ],
    ];
    for (const args of cases) {
      const t = io();
      expect(await run(args, t.io, t.commands), args.join(' ')).toBe(2);
      expect(t.err()).not.toBe('');
    }
  });

  it('--batch answers every JSON line with the same fields plus result, in input order', async () => {
    const lines = [
      { from: 'lab/src', to: 'lab/dst', port: open, protocol: 'TCP', family: 'IPv6' },
      { from: 'lab/src', to: 'lab/dst', port: closed, protocol: 'UDP', family: 'IPv4' },
      { from: 'lab/src', to: 'lab/gone', port: open, protocol: 'TCP', family: 'IPv4' },
      { from: 'lab/src', to: 'lab/dst', port: open, protocol: 'UDP', family: 'IPv4' },
    ];
    const t = io(lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    expect(await run(['lab', 'probe', '--batch', '--timeout-ms', '300'], t.io, t.commands)).toBe(2);
    const got = t
      .out()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(got.map((g) => g.result)).toEqual(['connected', 'blocked', 'error', 'connected']);
    got.forEach((g, i) => expect(g).toMatchObject(lines[i] ?? {}));
    expect(got[2]?.reason).toMatch(/no pod lab\/gone/);
  });

  it('an address target: either family, --family optional, in --batch too', async () => {
    for (const [addr, family] of [
      ['127.0.0.1', []],
      ['::1', []],
      ['::1', ['--family', 'IPv6']],
    ] as const) {
      const t = io();
      const args = ['lab', 'probe', 'lab/src', addr, '--port', String(open), '--protocol', 'TCP'];
      expect(await run([...args, ...family], t.io, t.commands), addr).toBe(0);
      expect(t.out()).toBe('connected\n');
    }
    const closedArgs = ['lab', 'probe', 'lab/src', '127.0.0.1', '--port', String(closed)];
    const c = io();
    expect(await run([...closedArgs, '--protocol', 'UDP'], c.io, c.commands)).toBe(1);
    expect(c.out()).toBe('blocked\n');
    // a family that is not the address's, or a port name, is an error
    for (const extra of [
      ['--port', String(open), '--family', 'IPv4'],
      ['--port', 'echo'],
    ]) {
      const t = io();
      expect(
        await run(
          ['lab', 'probe', 'lab/src', '::1', '--protocol', 'TCP', ...extra],
          t.io,
          t.commands,
        ),
      ).toBe(2);
      expect(t.err()).not.toBe('');
    }
    const lines = [
      { from: 'lab/src', to: '::1', port: open, protocol: 'TCP' },
      { from: 'lab/src', to: '127.0.0.1', port: open, protocol: 'UDP', family: 'IPv4' },
      { from: 'lab/src', to: 'lab/dst', port: open, protocol: 'TCP' },
    ];
    const b = io(lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    expect(await run(['lab', 'probe', '--batch', '--timeout-ms', '500'], b.io, b.commands)).toBe(2);
    const got = b
      .out()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(got.map((g) => g.result)).toEqual(['connected', 'connected', 'error']);
    expect(got[2]?.reason).toMatch(/--family/);
  });

  it('exec refuses an unknown pod with exit 2', async () => {
    const t = io();
    expect(await run(['lab', 'exec', 'lab/nope', '--', 'true'], t.io, t.commands)).toBe(2);
    expect(await run(['lab', 'exec', 'lab/src', 'true'], t.io, t.commands)).toBe(2);
  });
});
