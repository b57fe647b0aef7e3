// Taking Dyad off the node when it is removed from the cluster (`dyad uninstall`, helm's
// pre-delete hook, asks over NATS). A SIGTERM never does this: a rolling restart or upgrade must
// leave pods their traffic, so maps stay pinned and programs attached then. Once asked, the
// order matters: the conflist first, so the runtime gives no new pod to Dyad; then everything
// that would act on the node (CNI and API servers, desired state, flows); then the kernel state
// (tc on the uplinks, the pods' devices, node routes, pins); the plugin binary and the agent's
// directories last. Every step runs even when one before it failed; the answer lists both.
import { lstatSync, readFileSync, readdirSync, rmSync, rmdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

export interface UninstallSteps {
  /** Stops CNI and API servers, the desired-state follower, flows and state-file writes. */
  readonly quiesce: () => Promise<void>;
  /** Takes Dyad's filter off each uplink's tc ingress; returns the uplinks it was on. */
  readonly detachUplinks: () => string[];
  /** Deletes the host side of every pod veth Dyad made; returns their names. */
  readonly removePodLinks: () => string[];
  /** Removes the routes to other nodes' pod blocks; returns how many there were. */
  readonly removeNodeRoutes: () => number;
  /** Closes the datapath (maps, programs, ring buffer) before its pins go. */
  readonly closeDatapath: () => void;
}

export interface UninstallPaths {
  readonly cniConfFile?: string;
  readonly pinDir: string;
  /** Removed too when empty: the directory Dyad made to hold pinDir. */
  readonly pinRoot: string;
  readonly paths: readonly string[];
}

export interface UninstallOutcome {
  readonly removed: string[];
  readonly problems: string[];
}

/** Mount points as this process sees them (a directory mounted here cannot be removed). */
export function mountPoints(mountinfo: string): Set<string> {
  const out = new Set<string>();
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ');
    // octal escapes (\040 for a space) as the kernel writes them
    if (f[4] !== undefined)
      out.add(f[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return out;
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Removes what is under `dir` but the mount points in it (a volume the runtime mounted inside
 * the agent's host paths is not Dyad's state, and its user cannot remove it): returns those left.
 */
function clear(dir: string, mounts: ReadonlySet<string>): string[] {
  const left: string[] = [];
  for (const e of readdirSync(dir)) {
    const full = resolve(join(dir, e));
    if (mounts.has(full)) left.push(full);
    else if ([...mounts].some((m) => m.startsWith(`${full}/`))) left.push(...clear(full, mounts));
    else rmSync(full, { recursive: true, force: true });
  }
  return left;
}

/**
 * Removes a path. A directory that is a mount point here (the agent's host paths are), or holds
 * one, cannot be removed by its user, so it is emptied around them instead. Returns what was
 * done, or undefined for nothing.
 */
export function removePath(path: string, mounts: ReadonlySet<string>): string | undefined {
  if (!exists(path)) return undefined;
  const full = resolve(path);
  const holdsMount = [...mounts].some((m) => m.startsWith(`${full}/`));
  if (mounts.has(full) || holdsMount) {
    const entries = readdirSync(path).length;
    const left = clear(path, mounts);
    return `emptied ${path} (${entries} entries${mounts.has(full) ? '; a mount point here' : ''}${
      left.length > 0 ? `; left the mount points ${left.join(', ')}` : ''
    })`;
  }
  rmSync(path, { recursive: true, force: true });
  return `removed ${path}`;
}

function why(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Runs the uninstall once; a second call answers again with what is left (normally nothing). */
export class NodeUninstall {
  readonly #steps: UninstallSteps;
  readonly #paths: UninstallPaths;
  #done = false;

  constructor(steps: UninstallSteps, paths: UninstallPaths) {
    this.#steps = steps;
    this.#paths = paths;
  }

  /** True once asked: nothing may write to the node any more (state file, pins, routes). */
  get done(): boolean {
    return this.#done;
  }

  async run(): Promise<UninstallOutcome> {
    const first = !this.#done;
    this.#done = true;
    const removed: string[] = [];
    const problems: string[] = [];
    const step = async (name: string, fn: () => unknown): Promise<void> => {
      try {
        const r = await fn();
        if (typeof r === 'string') removed.push(r);
        else if (Array.isArray(r)) for (const x of r) removed.push(`${name} ${String(x)}`);
        else if (typeof r === 'number' && r > 0) removed.push(`${name} (${r})`);
      } catch (err) {
        problems.push(`${name}: ${why(err)}`);
      }
    };
    const mounts = (): Set<string> => mountPoints(readFileSync('/proc/self/mountinfo', 'utf8'));
    const conf = this.#paths.cniConfFile;
    if (conf !== undefined)
      await step('conflist', () => {
        const r = removePath(conf, new Set());
        return r === undefined ? undefined : `conflist: ${r}`;
      });
    if (first) {
      await step('quiesce', () => this.#steps.quiesce());
      await step('tc on uplink', () => this.#steps.detachUplinks());
      await step('pod device', () => this.#steps.removePodLinks());
      await step('node routes', () => this.#steps.removeNodeRoutes());
      await step('close datapath', () => this.#steps.closeDatapath());
    }
    await step('pins', () => {
      const r = removePath(this.#paths.pinDir, new Set());
      return r === undefined ? undefined : `pins: ${r}`;
    });
    const root = this.#paths.pinRoot;
    if (root !== this.#paths.pinDir)
      await step('pin root', () => {
        try {
          rmdirSync(root);
          return `pins: removed ${root}`;
        } catch (err) {
          // another node's agent on this machine (the lab) may still have its pins there
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT' || code === 'ENOTEMPTY') return undefined;
          throw err;
        }
      });
    for (const p of this.#paths.paths) {
      await step(p, () => removePath(p, mounts()));
    }
    return { removed, problems };
  }
}
