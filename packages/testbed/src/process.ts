import { spawn } from 'node:child_process';
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { StartupError } from './errors.ts';
import { trackGroup, untrackGroup } from './reaper.ts';

export interface SpawnSpec {
  /** Names the process in errors, e.g. "kube-apiserver". */
  name: string;
  command: string;
  args: readonly string[];
  /** stdout and stderr are appended here. */
  logPath: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be spawned at all (ENOENT, EACCES, ...). */
  error?: Error;
}

const TAIL_BYTES = 64 * 1024;

/** Last `lines` lines of a log file (reads at most the last 64 KiB). */
export function readLogTail(logPath: string, lines = 30): string {
  let fd: number;
  try {
    fd = openSync(logPath, 'r');
  } catch {
    return '(no log file)';
  }
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(size, TAIL_BYTES);
    const buffer = Buffer.alloc(length);
    readSync(fd, buffer, 0, length, size - length);
    const all = buffer.toString('utf8').replace(/\n$/, '').split('\n');
    return all.slice(-lines).join('\n');
  } finally {
    closeSync(fd);
  }
}

function describeExit(info: ExitInfo): string {
  if (info.error) return `could not be spawned: ${info.error.message}`;
  if (info.signal) return `was killed by ${info.signal}`;
  return `exited with code ${String(info.code)}`;
}

/**
 * A child process in its own process group (so the whole tree can be signalled), logging to a file.
 */
export class ManagedProcess {
  readonly name: string;
  readonly logPath: string;
  readonly pid: number | undefined;
  readonly exited: Promise<ExitInfo>;
  #exit: ExitInfo | undefined;

  constructor(spec: SpawnSpec) {
    this.name = spec.name;
    this.logPath = spec.logPath;
    const fd = openSync(spec.logPath, 'a');
    writeSync(fd, `# ${new Date().toISOString()} ${spec.command} ${spec.args.join(' ')}\n`);
    const child = spawn(spec.command, spec.args, {
      cwd: spec.cwd,
      env: spec.env ?? process.env,
      stdio: ['ignore', fd, fd],
      detached: true,
    });
    closeSync(fd);
    this.pid = child.pid;
    if (child.pid !== undefined) trackGroup(child.pid);
    this.exited = new Promise<ExitInfo>((resolve) => {
      child.once('error', (error) => {
        // 'error' without 'exit' means the spawn itself failed.
        if (child.pid === undefined) resolve({ code: null, signal: null, error });
      });
      child.once('exit', (code, signal) => resolve({ code, signal }));
    }).then((info) => {
      this.#exit = info;
      if (child.pid !== undefined) untrackGroup(child.pid);
      return info;
    });
  }

  get running(): boolean {
    return this.#exit === undefined;
  }

  get exitInfo(): ExitInfo | undefined {
    return this.#exit;
  }

  describeExit(): string {
    return this.#exit ? describeExit(this.#exit) : 'is running';
  }

  /** Signals the whole process group. */
  signal(signal: NodeJS.Signals): void {
    if (!this.running || this.pid === undefined) return;
    try {
      process.kill(-this.pid, signal);
    } catch {
      // Exited between the check and the kill.
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
  async stop(graceMs = 10_000): Promise<ExitInfo> {
    if (!this.running) return this.exited;
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  async kill(): Promise<ExitInfo> {
    this.signal('SIGKILL');
    return this.exited;
  }

  logTail(lines = 30): string {
    return readLogTail(this.logPath, lines);
  }
}

export function spawnLogged(spec: SpawnSpec): ManagedProcess {
  return new ManagedProcess(spec);
}

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** What is being waited for, for the error message. */
  what?: string;
}

/**
 * Polls `probe` until it returns true (a string result says why it is not ready yet). Throws a StartupError naming the process, with its log tail,
 * if the process exits first or the timeout passes.
 */
export async function waitUntilReady(
  proc: ManagedProcess,
  probe: () => Promise<boolean | string>,
  options: WaitOptions = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const intervalMs = options.intervalMs ?? 100;
  const deadline = Date.now() + timeoutMs;
  let lastProblem: string | undefined;
  for (;;) {
    if (!proc.running) {
      throw new StartupError(
        proc.name,
        `${proc.describeExit()} before it was ready`,
        proc.logPath,
        proc.logTail(),
      );
    }
    try {
      const result = await probe();
      if (result === true) return;
      lastProblem = result === false ? 'not ready' : result;
    } catch (error) {
      lastProblem = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() >= deadline) {
      const what = options.what ?? 'ready';
      throw new StartupError(
        proc.name,
        `not ${what} after ${timeoutMs} ms (last probe: ${lastProblem})`,
        proc.logPath,
        proc.logTail(),
      );
    }
    await Promise.race([sleep(intervalMs), proc.exited]);
  }
}
