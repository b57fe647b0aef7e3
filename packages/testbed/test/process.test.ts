import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { StartupError, freePorts, spawnLogged, waitUntilReady } from '../src/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'dyad-proc-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// A killed process may linger as a zombie until its new parent reaps it; that counts as dead.
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

describe('process', () => {
  it('reports a process that dies before ready with its name and last log lines', async () => {
    const proc = spawnLogged({
      name: 'fake-server',
      command: 'sh',
      args: [
        '-c',
        'for i in $(seq 1 50); do echo line-$i; done; echo "fatal: bad flag" >&2; exit 3',
      ],
      logPath: join(dir, 'fake.log'),
    });
    const error = await waitUntilReady(proc, () => Promise.resolve(false)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StartupError);
    const message = (error as StartupError).message;
    expect(message).toMatch(/^fake-server failed to start: exited with code 3/);
    expect(message).toContain('fatal: bad flag');
    expect(message).toContain('line-50');
    // Only the tail: the first lines are cut.
    expect(message).not.toContain('line-1\n');
  });

  it('stop() kills the whole process tree, not just the direct child', async () => {
    const pidFile = join(dir, 'grandchild.pid');
    const proc = spawnLogged({
      name: 'tree',
      command: 'sh',
      // The shell ignores TERM, so only a group kill (or the SIGKILL fallback) ends the grandchild too.
      args: ['-c', `trap '' TERM; sleep 1000 & echo $! > ${pidFile}; wait`],
      logPath: join(dir, 'tree.log'),
    });
    await waitUntilReady(proc, () =>
      Promise.resolve(existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== ''),
    );
    const grandchild = Number(readFileSync(pidFile, 'utf8').trim());
    expect(alive(grandchild)).toBe(true);
    await proc.stop(500);
    await vi.waitFor(() => expect(alive(grandchild)).toBe(false), { timeout: 5000, interval: 50 });
  });

  it('hands out distinct free loopback ports', async () => {
    const ports = await freePorts(8);
    expect(new Set(ports).size).toBe(8);
    for (const p of ports) expect(p).toBeGreaterThan(0);
  });
});
