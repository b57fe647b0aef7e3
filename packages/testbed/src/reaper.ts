import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Exit and signal handlers are process-global by nature, so what they must clean up is tracked
// here, process-wide: a test that crashes or is interrupted must not leave servers running.
const groups = new Set<number>();
const dirs = new Set<string>();
let installed = false;

function reapAll(): void {
  for (const pid of groups) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  groups.clear();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs.clear();
}

function install(): void {
  if (installed) return;
  installed = true;
  process.once('exit', reapAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      reapAll();
      // Our listener replaced the default action; re-raise so the process still dies of the signal
      // unless someone else also listens.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
}

/** Tracks a process group leader so it is SIGKILLed (with its group) if this process exits. */
export function trackGroup(pid: number): void {
  install();
  groups.add(pid);
}

export function untrackGroup(pid: number): void {
  groups.delete(pid);
}

/**
 * Creates a fresh temporary directory. Unless `keep`, it is removed when this process exits even if
 * `removeTempDir` is never called.
 */
export function makeTempDir(prefix: string, keep: boolean): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (!keep) {
    install();
    dirs.add(dir);
  }
  return dir;
}

export function removeTempDir(dir: string, keep: boolean): void {
  dirs.delete(dir);
  if (!keep) rmSync(dir, { recursive: true, force: true });
}

/** DYAD_KEEP_TESTBED=1 keeps temp dirs (logs, data) for post-mortem debugging. */
export function keepFromEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  return env['DYAD_KEEP_TESTBED'] === '1';
}
