import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { retryWithBackoff } from '@dyad/bus';
import { z } from 'zod';
import { CniResult, cniAdd, cniDel, podIpsFromResult } from './cni.ts';
import type { CniExec, ConflistValue, RuntimeConf } from './cni.ts';
import { ControlClient } from './control.ts';
import type { Family } from '@dyad/netaddr';
import { alive, ip, kill, netnsExists } from './sys.ts';

const STANDIN = fileURLToPath(new URL('./standin.ts', import.meta.url));

/** What the runtime keeps on disk per sandbox, written before the CNI ADD so a crash can be undone. */
export const SandboxFile = z.object({
  containerId: z.string(),
  uid: z.string(),
  namespace: z.string(),
  name: z.string(),
  netns: z.string(),
  result: CniResult.optional(),
  standinPid: z.number().int().optional(),
  control: z.string(),
});
export type SandboxFileValue = z.output<typeof SandboxFile>;

export interface SandboxEnv {
  readonly prefix: string;
  readonly nodeNetns: string;
  readonly conflist: ConflistValue;
  readonly cniPath: readonly string[];
  /** Where sandbox files live (per node). */
  readonly dir: string;
  /** Where control sockets live. */
  readonly runDir: string;
  readonly logDir: string;
  readonly families: readonly Family[];
  /** Extra environment for the stand-in (the lab markers, so cleanup finds it). */
  readonly env: NodeJS.ProcessEnv;
  /** Stand-ins started ahead of need; without it each pod's is started by nsenter. */
  readonly pool?: StandinPool;
}

/**
 * Stand-ins started before any pod needs one, waiting in the machine's netns. A pod takes one
 * and sends it its netns; it enters it with setns(2) and is ready in milliseconds, where a fresh
 * Node process takes 100-250 ms: that start-up was most of a pod's time to Running.
 */
export class StandinPool {
  readonly #idle: ChildProcess[] = [];
  readonly #env: NodeJS.ProcessEnv;
  readonly #log: string;
  readonly #size: number;
  #closed = false;

  constructor(options: { env: NodeJS.ProcessEnv; log: string; size?: number }) {
    this.#env = options.env;
    this.#log = options.log;
    this.#size = options.size ?? 2;
  }

  fill(): void {
    while (!this.#closed && this.#idle.length < this.#size) {
      const log = openSync(this.#log, 'a');
      const child = spawn(process.execPath, [STANDIN, '--pool'], {
        env: { ...process.env, ...this.#env },
        stdio: ['pipe', log, log],
        detached: true,
      });
      closeSync(log);
      child.unref();
      child.on('error', () => undefined);
      child.stdin?.on('error', () => undefined);
      this.#idle.push(child);
    }
  }

  /** Hands a waiting stand-in its pod; undefined when none is alive. */
  assign(netns: string, control: string, ports: readonly number[]): number | undefined {
    for (;;) {
      const child = this.#idle.shift();
      setImmediate(() => this.fill());
      if (child === undefined) return undefined;
      if (child.pid === undefined || !alive(child.pid)) continue;
      child.stdin?.end(JSON.stringify({ netns, control, ports }) + '\n');
      return child.pid;
    }
  }

  close(): void {
    this.#closed = true;
    for (const c of this.#idle.splice(0)) c.kill('SIGKILL');
  }
}

export interface PodIdentity {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
}

export interface StartedSandbox {
  readonly file: SandboxFileValue;
  readonly podIPs: string[];
  /** Where the time went, in ms: netns, CNI ADD, stand-in ready (the last two overlap). */
  readonly timings: {
    readonly netnsMs: number;
    readonly cniMs: number;
    readonly standinMs: number;
  };
}

export function listSandboxes(dir: string): SandboxFileValue[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
  const out: SandboxFileValue[] = [];
  for (const f of names) {
    try {
      out.push(SandboxFile.parse(JSON.parse(readFileSync(join(dir, f), 'utf8'))));
    } catch {
      rmSync(join(dir, f), { force: true });
    }
  }
  return out;
}

function save(dir: string, s: SandboxFileValue): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${s.containerId}.json`), JSON.stringify(s) + '\n');
}

function runtimeConf(s: SandboxFileValue): RuntimeConf {
  return {
    containerId: s.containerId,
    netns: `/run/netns/${s.netns}`,
    ifName: 'eth0',
    args: [
      ['IgnoreUnknown', '1'],
      ['K8S_POD_NAMESPACE', s.namespace],
      ['K8S_POD_NAME', s.name],
      ['K8S_POD_INFRA_CONTAINER_ID', s.containerId],
      ['K8S_POD_UID', s.uid],
    ],
  };
}

function cniExec(env: SandboxEnv): CniExec {
  return { path: env.cniPath, netns: env.nodeNetns };
}

/**
 * Creates a pod sandbox as a container runtime does: a fresh netns with loopback up, then the
 * conflist's plugins (the real dyad-cni, run in the node's netns), then the pod's stand-in
 * process in the new netns. Throws (after undoing what it did) when the ADD fails.
 */
export async function createSandbox(
  env: SandboxEnv,
  pod: PodIdentity,
  ports: readonly number[],
): Promise<StartedSandbox> {
  const containerId = randomBytes(32).toString('hex');
  const file: { -readonly [K in keyof SandboxFileValue]: SandboxFileValue[K] } = {
    containerId,
    uid: pod.uid,
    namespace: pod.namespace,
    name: pod.name,
    netns: `${env.prefix}-${containerId.slice(0, 12)}`,
    control: join(env.runDir, `${containerId.slice(0, 16)}.sock`),
  };
  save(env.dir, file);
  try {
    const t0 = performance.now();
    ip('netns', 'add', file.netns);
    ip('-n', file.netns, 'link', 'set', 'lo', 'up');
    const t1 = performance.now();
    const since = (t: number) => Math.round(performance.now() - t);
    let cniMs = 0;
    let standinMs = 0;
    // The stand-in binds wildcard addresses, so it can start while the plugins wire the netns:
    // its start-up (a Node process) overlaps the ADD instead of following it.
    file.standinPid = spawnStandin(env, file, ports);
    save(env.dir, file);
    const [result] = await Promise.all([
      cniAdd(env.conflist, runtimeConf(file), cniExec(env)).then((r) => {
        cniMs = since(t1);
        return r;
      }),
      waitStandinReady(file, file.standinPid).then(() => {
        standinMs = since(t1);
      }),
    ]);
    const done = { ...file, result };
    save(env.dir, done);
    return {
      file: done,
      podIPs: podIpsFromResult(result, env.families),
      timings: { netnsMs: Math.round(t1 - t0), cniMs, standinMs },
    };
  } catch (err) {
    await destroySandbox(env, file, 3).catch(() => undefined);
    throw err;
  }
}

function spawnStandin(env: SandboxEnv, s: SandboxFileValue, ports: readonly number[]): number {
  const pooled = env.pool?.assign(s.netns, s.control, ports);
  if (pooled !== undefined) return pooled;
  mkdirSync(env.logDir, { recursive: true });
  const log = openSync(join(env.logDir, `${s.namespace}_${s.name}.log`), 'a');
  const child = spawn(
    'nsenter',
    [`--net=/run/netns/${s.netns}`, process.execPath, STANDIN, s.control, JSON.stringify(ports)],
    { env: { ...process.env, ...env.env }, stdio: ['ignore', log, log], detached: true },
  );
  closeSync(log);
  child.unref();
  if (child.pid === undefined) throw new Error('stand-in did not start');
  return child.pid;
}

/** Ready when its control socket answers. */
async function waitStandinReady(s: SandboxFileValue, pid: number): Promise<void> {
  for (let i = 0; i < 800; i++) {
    if (!alive(pid)) throw new Error(`stand-in of ${s.namespace}/${s.name} exited at start`);
    const c = new ControlClient(s.control);
    const r = await c.request({ op: 'hello' }, 1000);
    c.close();
    if (r.ok === true) return;
    await sleep(10);
  }
  kill(pid, 'SIGKILL');
  throw new Error(`stand-in of ${s.namespace}/${s.name} did not become ready`);
}

/** Whether a sandbox from disk is whole: its netns, its ADD result and a live stand-in. */
export function sandboxIntact(s: SandboxFileValue): boolean {
  return (
    netnsExists(s.netns) &&
    s.result !== undefined &&
    s.standinPid !== undefined &&
    alive(s.standinPid)
  );
}

export function sandboxPodIps(env: SandboxEnv, s: SandboxFileValue): string[] {
  return s.result === undefined ? [] : podIpsFromResult(s.result, env.families);
}

/** Stops the stand-in, CNI DEL (with the cached result), removes the netns and the file. */
export async function destroySandbox(
  env: SandboxEnv,
  s: SandboxFileValue,
  attempts = 20,
): Promise<void> {
  if (s.standinPid !== undefined && alive(s.standinPid)) {
    kill(s.standinPid, 'SIGTERM');
    for (let i = 0; i < 40 && alive(s.standinPid); i++) await sleep(25);
    kill(s.standinPid, 'SIGKILL');
  }
  rmSync(s.control, { force: true });
  // DEL must succeed eventually or the addresses leak until ipam's GC; the agent may be
  // restarting, so retry for a while. The netns and the file go either way; the error follows.
  const failed = await retryWithBackoff(
    () => cniDel(env.conflist, runtimeConf(s), cniExec(env), s.result),
    { policy: { initialMs: 100, maxMs: 2000 }, attempts, onError: () => undefined },
  ).then(
    () => undefined,
    (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
  );
  if (netnsExists(s.netns)) {
    try {
      ip('netns', 'del', s.netns);
    } catch {
      // already gone
    }
  }
  rmSync(join(env.dir, `${s.containerId}.json`), { force: true });
  if (failed !== undefined) throw failed;
}
