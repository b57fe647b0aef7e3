import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ProcessRecordValue } from './state.ts';
import { alive, kill, startTime } from './sys.ts';

export interface ChildSpec {
  /** Unique; names the log file (`<logs>/<name>.log`). */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  /** Run inside this netns (nsenter --net, so bpffs and files stay visible). */
  readonly netns?: string;
  /** And in this mount namespace (a kubelet-mode node's file, node-mounts.ts). */
  readonly mountns?: string;
  /** Restart when it exits, with backoff. */
  readonly restart: boolean;
}

interface Child {
  readonly spec: ChildSpec;
  proc: ChildProcess | undefined;
  restarts: number;
  startedAt: number;
  timer: NodeJS.Timeout | undefined;
  stopped: boolean;
}

/**
 * Runs the lab's processes, each in its own process group with its log appended to a file,
 * and restarts those that exit (backoff 250 ms doubling to 5 s, reset after 30 s up). The
 * process list is reported on every change so `state.json` always names the live pids.
 */
export class Supervisor {
  readonly #logs: string;
  readonly #env: NodeJS.ProcessEnv;
  readonly #onChange: () => void;
  readonly #children = new Map<string, Child>();
  #stopping = false;

  constructor(options: { logs: string; env: NodeJS.ProcessEnv; onChange: () => void }) {
    this.#logs = options.logs;
    this.#env = options.env;
    this.#onChange = options.onChange;
  }

  start(spec: ChildSpec): void {
    if (this.#children.has(spec.name)) throw new Error(`${spec.name} is already supervised`);
    const child: Child = {
      spec,
      proc: undefined,
      restarts: 0,
      startedAt: 0,
      timer: undefined,
      stopped: false,
    };
    this.#children.set(spec.name, child);
    this.#launch(child);
  }

  records(): ProcessRecordValue[] {
    const out: ProcessRecordValue[] = [];
    for (const c of this.#children.values()) {
      const pid = c.proc?.pid;
      if (pid === undefined || c.proc?.exitCode !== null || c.proc.signalCode !== null) continue;
      const st = startTime(pid);
      out.push({
        name: c.spec.name,
        pid,
        ...(st === undefined ? {} : { startTime: st }),
        restarts: c.restarts,
        log: this.logPath(c.spec.name),
        ...(c.spec.netns === undefined ? {} : { netns: c.spec.netns }),
      });
    }
    return out;
  }

  logPath(name: string): string {
    return join(this.#logs, `${name}.log`);
  }

  isRunning(name: string): boolean {
    const p = this.#children.get(name)?.proc;
    return p !== undefined && p.exitCode === null && p.signalCode === null;
  }

  #launch(c: Child): void {
    if (this.#stopping || c.stopped) return;
    const fd = openSync(this.logPath(c.spec.name), 'a');
    const enter = [
      ...(c.spec.netns === undefined ? [] : [`--net=/run/netns/${c.spec.netns}`]),
      ...(c.spec.mountns === undefined ? [] : [`--mount=${c.spec.mountns}`]),
    ];
    const [cmd, args] =
      enter.length === 0
        ? [c.spec.command, c.spec.args]
        : ['nsenter', [...enter, c.spec.command, ...c.spec.args]];
    writeSync(fd, `# ${new Date().toISOString()} start #${c.restarts}: ${cmd} ${args.join(' ')}\n`);
    const proc = spawn(cmd, args, {
      env: { ...process.env, ...this.#env, ...c.spec.env },
      stdio: ['ignore', fd, fd],
      detached: true,
    });
    closeSync(fd);
    c.proc = proc;
    c.startedAt = Date.now();
    proc.on('error', () => undefined);
    proc.on('exit', (code, signal) => {
      const log = openSync(this.logPath(c.spec.name), 'a');
      writeSync(log, `# ${new Date().toISOString()} exited code=${code} signal=${signal}\n`);
      closeSync(log);
      this.#onChange();
      if (this.#stopping || c.stopped || !c.spec.restart) return;
      const upMs = Date.now() - c.startedAt;
      const backoff = upMs > 30_000 ? 250 : Math.min(5000, 250 * 2 ** Math.min(c.restarts, 5));
      c.timer = setTimeout(() => {
        c.timer = undefined;
        c.restarts++;
        this.#launch(c);
      }, backoff);
    });
    // Report once the process exists in /proc, so the recorded start time is its own.
    setImmediate(() => this.#onChange());
  }

  /** Stops the named children (or all), in reverse start order; SIGKILL after `graceMs`. */
  async stop(names?: readonly string[], graceMs = 5000): Promise<void> {
    if (names === undefined) this.#stopping = true;
    const targets = [...this.#children.values()]
      .filter((c) => names === undefined || names.includes(c.spec.name))
      .reverse();
    for (const c of targets) {
      c.stopped = true;
      clearTimeout(c.timer);
      if (names !== undefined) this.#children.delete(c.spec.name);
    }
    const pids = targets
      .map((c) => c.proc?.pid)
      .filter((p): p is number => p !== undefined && alive(p));
    for (const pid of pids) kill(-pid, 'SIGTERM');
    const until = Date.now() + graceMs;
    while (Date.now() < until && pids.some(alive)) await sleep(50);
    for (const pid of pids) if (alive(pid)) kill(-pid, 'SIGKILL');
    this.#onChange();
  }
}
