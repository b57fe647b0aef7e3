import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { killKubeletContainers, removeKubeletFiles } from './kubelet-mode.ts';
import { removeNodeMountNs } from './node-mounts.ts';
import type { LabPaths } from './paths.ts';
import { ENV_DIR, ENV_RUN, OWNER_DIR } from './paths.ts';
import { PREFIX_PATTERN } from './plan.ts';
import { readState } from './state.ts';
import { alive, kill, listNetns, netnsPids, pidsWithEnv, run } from './sys.ts';

export interface CleanupReport {
  readonly prefixes: string[];
  readonly processes: number;
  readonly netns: string[];
}

/** Run prefixes this lab directory owns: from its state file and from owner marks under /run. */
export function ownedPrefixes(paths: LabPaths): string[] {
  const out = new Set<string>();
  const s = readState(paths.state);
  if (s !== undefined && PREFIX_PATTERN.test(s.prefix)) out.add(s.prefix);
  try {
    for (const f of readdirSync(OWNER_DIR)) {
      const prefix = f.replace(/\.owner$/, '');
      if (!PREFIX_PATTERN.test(prefix)) continue;
      if (readFileSync(join(OWNER_DIR, f), 'utf8').trim() === paths.dir) out.add(prefix);
    }
  } catch {
    // no marks
  }
  return [...out];
}

async function terminate(pids: readonly number[]): Promise<number> {
  const live = pids.filter(alive);
  for (const pid of live) kill(pid, 'SIGTERM');
  for (let i = 0; i < 60 && live.some(alive); i++) await sleep(50);
  for (const pid of live) if (alive(pid)) kill(pid, 'SIGKILL');
  for (let i = 0; i < 40 && live.some(alive); i++) await sleep(50);
  return live.length;
}

/**
 * Removes one run's processes (by their environment mark and by the namespaces they run in),
 * namespaces (and with them every device inside), bpffs pins and owner mark. `except` is spared
 * (the caller itself).
 */
export async function cleanupRun(
  prefix: string,
  except: readonly number[] = [],
): Promise<{ processes: number; netns: string[] }> {
  const marked = new Set(pidsWithEnv(ENV_RUN, prefix));
  const netns = listNetns().filter((n) => n.startsWith(`${prefix}-`));
  for (const n of netns) for (const pid of netnsPids(n)) marked.add(pid);
  marked.delete(process.pid);
  for (const pid of except) marked.delete(pid);
  const processes = await terminate([...marked]);
  for (const n of netns) {
    try {
      run('ip', ['netns', 'del', n]);
    } catch {
      // raced with another cleanup
    }
  }
  // the nodes' mount namespaces end once their processes are gone and their files unmounted
  removeNodeMountNs(prefix);
  rmSync(`/sys/fs/bpf/${prefix}`, { recursive: true, force: true });
  rmSync(join(OWNER_DIR, `${prefix}.owner`), { force: true });
  return { processes, netns };
}

/**
 * Removes everything of this lab directory's runs, however they ended: the supervisor first (it
 * tears down in order when asked, and must not restart what is being killed), then every run's
 * leftovers, then the run files. Safe to call when nothing is there.
 */
export async function cleanupLab(paths: LabPaths): Promise<CleanupReport> {
  const prefixes = ownedPrefixes(paths);
  const s = readState(paths.state);
  // While the nodes' containerd still answer: their containers carry no lab mark.
  await killKubeletContainers(paths);
  let processes = 0;
  if (s !== undefined && s.supervisorPid !== process.pid && alive(s.supervisorPid)) {
    kill(s.supervisorPid, 'SIGTERM');
    for (let i = 0; i < 300 && alive(s.supervisorPid); i++) await sleep(100);
    processes += await terminate([s.supervisorPid]);
  }
  processes += await terminate(pidsWithEnv(ENV_DIR, paths.dir).filter((p) => p !== process.pid));
  const netns: string[] = [];
  for (const p of prefixes) {
    const r = await cleanupRun(p);
    processes += r.processes;
    netns.push(...r.netns);
  }
  for (const dir of [
    paths.run,
    paths.pods,
    paths.cni,
    paths.tmp,
    paths.agents,
    join(paths.dir, 'helm'),
  ]) {
    rmSync(dir, { recursive: true, force: true });
  }
  await removeKubeletFiles(paths);
  rmSync(paths.kubeconfig, { force: true });
  if (existsSync(paths.state)) rmSync(paths.state, { force: true });
  return { prefixes, processes, netns };
}
