// The agent's part of `helm uninstall` (src/uninstall.ts): the order (conflist before anything
// that stops serving, kernel state before pins, files last), every step run even when one
// failed, mount points emptied rather than removed, and a second request that does no kernel
// work again. The kernel steps themselves are proven on real nodes by lab/test/kubelet.lab.test.ts.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NodeUninstall, mountPoints, removePath } from '../src/uninstall.ts';
import type { UninstallSteps } from '../src/uninstall.ts';

let dir = '';
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'dyad-uninstall-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A node's files as install-cni and the agent leave them, under `dir`. */
function node(): {
  conf: string;
  bin: string;
  pinRoot: string;
  pinDir: string;
  run: string;
  state: string;
} {
  const p = {
    conf: join(dir, 'etc-cni', '05-dyad.conflist'),
    bin: join(dir, 'opt-cni', 'dyad-cni'),
    pinRoot: join(dir, 'bpf', 'dyad'),
    pinDir: join(dir, 'bpf', 'dyad', 'node-1'),
    run: join(dir, 'run-dyad'),
    state: join(dir, 'var-lib-dyad'),
  };
  for (const d of [join(dir, 'etc-cni'), join(dir, 'opt-cni'), p.pinDir, p.run])
    mkdirSync(d, { recursive: true });
  mkdirSync(join(p.state, 'agent'), { recursive: true });
  writeFileSync(p.conf, '{}');
  writeFileSync(p.bin, 'elf');
  writeFileSync(join(p.pinDir, 'dy_endpoints'), '');
  mkdirSync(join(p.pinDir, 'ct'));
  writeFileSync(join(p.pinDir, 'ct', 'ep_1'), '');
  writeFileSync(join(p.run, 'cni.sock'), '');
  writeFileSync(join(p.state, 'agent', 'state.json'), '{}');
  return p;
}

function steps(log: string[], p: { conf: string; pinDir: string }, fail?: string): UninstallSteps {
  const step =
    <T>(name: string, value: T) =>
    (): T => {
      // what the node looks like when each step runs
      log.push(`${name} conflist=${existsSync(p.conf)} pins=${existsSync(p.pinDir)}`);
      if (name === fail) throw new Error(`${name} broke`);
      return value;
    };
  return {
    quiesce: async () => {
      step('quiesce', undefined)();
      await Promise.resolve();
    },
    detachUplinks: step('uplinks', ['eth0']),
    removePodLinks: step('links', ['dy1', 'dy2']),
    removeNodeRoutes: step('routes', 2),
    closeDatapath: step('close', undefined),
  };
}

describe('NodeUninstall', () => {
  it('removes the conflist first, the kernel state before the pins, then the files', async () => {
    const p = node();
    const log: string[] = [];
    const u = new NodeUninstall(steps(log, p), {
      cniConfFile: p.conf,
      pinDir: p.pinDir,
      pinRoot: p.pinRoot,
      paths: [p.bin, p.run, p.state],
    });
    expect(u.done).toBe(false);
    const out = await u.run();
    expect(u.done).toBe(true);
    expect(log).toEqual([
      'quiesce conflist=false pins=true',
      'uplinks conflist=false pins=true',
      'links conflist=false pins=true',
      'routes conflist=false pins=true',
      'close conflist=false pins=true',
    ]);
    expect(out.problems).toEqual([]);
    expect(out.removed).toEqual([
      `conflist: removed ${p.conf}`,
      'tc on uplink eth0',
      'pod device dy1',
      'pod device dy2',
      'node routes (2)',
      `pins: removed ${p.pinDir}`,
      `pins: removed ${p.pinRoot}`,
      `removed ${p.bin}`,
      `removed ${p.run}`,
      `removed ${p.state}`,
    ]);
    for (const x of [p.conf, p.bin, p.pinRoot, p.run, p.state])
      expect(existsSync(x), x).toBe(false);
  });

  it('runs every step when one fails, and says which failed', async () => {
    const p = node();
    const log: string[] = [];
    const u = new NodeUninstall(steps(log, p, 'links'), {
      cniConfFile: p.conf,
      pinDir: p.pinDir,
      pinRoot: p.pinRoot,
      paths: [p.bin],
    });
    const out = await u.run();
    expect(out.problems).toEqual(['pod device: links broke']);
    expect(log.map((l) => l.split(' ')[0])).toEqual([
      'quiesce',
      'uplinks',
      'links',
      'routes',
      'close',
    ]);
    expect(existsSync(p.pinDir)).toBe(false);
    expect(existsSync(p.bin)).toBe(false);
  });

  it('asked again, does no kernel work twice and removes what came back', async () => {
    const p = node();
    const log: string[] = [];
    const u = new NodeUninstall(steps(log, p), {
      cniConfFile: p.conf,
      pinDir: p.pinDir,
      pinRoot: p.pinRoot,
      paths: [p.bin],
    });
    await u.run();
    log.length = 0;
    writeFileSync(p.conf, '{}');
    const again = await u.run();
    expect(log).toEqual([]);
    expect(again).toEqual({ removed: [`conflist: removed ${p.conf}`], problems: [] });
  });

  it("keeps the pin root while another node's pins are in it", async () => {
    const p = node();
    mkdirSync(join(p.pinRoot, 'node-2'));
    const u = new NodeUninstall(steps([], p), {
      pinDir: p.pinDir,
      pinRoot: p.pinRoot,
      paths: [],
    });
    const out = await u.run();
    expect(out.problems).toEqual([]);
    expect(readdirSync(p.pinRoot)).toEqual(['node-2']);
  });
});

describe('removePath', () => {
  it('empties a directory that is a mount point here instead of removing it', () => {
    const p = node();
    const r = removePath(p.run, new Set([p.run]));
    expect(r).toBe(`emptied ${p.run} (1 entries; a mount point here)`);
    expect(readdirSync(p.run)).toEqual([]);
    expect(removePath(join(dir, 'absent'), new Set())).toBeUndefined();
  });

  it('leaves a mount point inside it (a volume the runtime put there) and removes the rest', () => {
    const p = node();
    const inner = join(p.run, 'secrets', 'token-volume');
    mkdirSync(inner, { recursive: true });
    writeFileSync(join(inner, 'token'), 'x');
    writeFileSync(join(p.run, 'secrets', 'ours'), 'x');
    // p.run itself is no mount point: it is removed around the inner one, not deleted whole
    const r = removePath(p.run, new Set([inner]));
    expect(r).toContain(`left the mount points ${inner}`);
    expect(readdirSync(p.run)).toEqual(['secrets']);
    expect(readdirSync(join(p.run, 'secrets'))).toEqual(['token-volume']);
    expect(readdirSync(inner)).toEqual(['token']);
  });

  it('reads mount points from mountinfo, octal escapes decoded', () => {
    const info = [
      '36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw',
      '37 35 0:31 / /run/dyad rw shared:2 - tmpfs tmpfs rw',
      '',
    ].join('\n');
    expect([...mountPoints(info)]).toEqual(['/mnt/with space', '/run/dyad']);
  });
});
