import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readLogTail, toolPath } from '@dyad/testbed';
import { cleanupLab, ownedPrefixes } from './cleanup.ts';
import { LabUsageError } from './errors.ts';
import { ENV_DIR, ENV_RUN, labPaths } from './paths.ts';
import type { LabPaths } from './paths.ts';
import { parseUpArgs } from './plan.ts';
import { listPodRecords } from './records.ts';
import { readState } from './state.ts';
import type { LabStateValue } from './state.ts';
import type { PodRecordValue } from './records.ts';
import { alive, listNetns, pidsWithEnv, run } from './sys.ts';

export interface LabIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
}

const DAEMON = new URL('./daemon.ts', import.meta.url).pathname;

function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new LabUsageError('the lab needs root (network namespaces, eBPF, tc)');
  }
}

/** Builds what the lab runs: the services' JavaScript, the datapath object and dyad-cni. */
function ensureBuilt(paths: LabPaths, io: LabIo): void {
  // tsc emits only what changed since the last build
  run('npm', ['--prefix', paths.root, 'run', '-s', 'build']);
  for (const [dir, artefact] of [
    ['bpf', 'build/datapath.o'],
    ['cni', 'build/dyad-cni'],
  ] as const) {
    if (!existsSync(join(paths.root, dir, 'Makefile'))) continue;
    if (existsSync(join(paths.root, dir, artefact))) {
      // make is cheap when nothing changed and rebuilds when a source did.
      run('make', ['-s', '-C', join(paths.root, dir)]);
      continue;
    }
    io.stderr.write(`building ${dir}/${artefact}…\n`);
    run('make', ['-s', '-C', join(paths.root, dir)]);
  }
}

/** `lab up [--nodes N] [--ipv4=false|--ipv6=false]`: replaces any previous lab, waits until ready. */
export async function labUp(
  args: readonly string[],
  io: LabIo,
  paths: LabPaths = labPaths(),
): Promise<number> {
  const options = parseUpArgs(args);
  requireRoot();
  // Unix socket paths hold at most 107 bytes; the longest the lab makes is a pod's control socket.
  const longest = join(paths.run, 'pods', `${'0'.repeat(16)}.sock`);
  if (Buffer.byteLength(longest) > 107) {
    throw new LabUsageError(
      `the lab directory's path is too long for unix sockets (${longest}); set DYAD_LAB_DIR to a shorter directory`,
    );
  }
  for (const t of [
    'kube-apiserver',
    'etcd',
    'kube-controller-manager',
    'kube-scheduler',
    'nats-server',
  ] as const) {
    toolPath(t);
  }
  ensureBuilt(paths, io);
  const previous = readState(paths.state);
  const removed = await cleanupLab(paths);
  if (removed.prefixes.length > 0) {
    io.stderr.write(
      `removed the previous lab ${removed.prefixes.join(', ')}${previous?.phase === 'ready' ? '' : ' (left over)'}: ${removed.processes} processes, ${removed.netns.length} namespaces\n`,
    );
  }
  rmSync(paths.logs, { recursive: true, force: true });
  mkdirSync(paths.logs, { recursive: true });
  const seed = randomBytes(6).toString('hex');
  const logPath = join(paths.logs, 'lab.log');
  const log = openSync(logPath, 'a');
  const child = spawn(process.execPath, [DAEMON, JSON.stringify({ options, seed })], {
    cwd: paths.root,
    env: { ...process.env, [ENV_DIR]: paths.dir },
    stdio: ['ignore', log, log],
    detached: true,
  });
  closeSync(log);
  child.unref();
  const started = Date.now();
  let lastStep = '';
  for (;;) {
    await sleep(200);
    const s = readState(paths.state);
    if (s !== undefined && s.supervisorPid === child.pid) {
      if (s.step !== undefined && s.step !== lastStep) {
        lastStep = s.step;
        io.stderr.write(`  ${s.step}\n`);
      }
      if (s.phase === 'ready') {
        io.stdout.write(summary(s, paths, (Date.now() - started) / 1000));
        return 0;
      }
      if (s.phase === 'failed') {
        io.stderr.write(`lab up failed: ${s.error ?? 'unknown error'}\n${tails(s, paths)}`);
        // DYAD_LAB_KEEP_FAILED=1: left as it is for a look; `lab down` removes it
        if (process.env.DYAD_LAB_KEEP_FAILED !== '1') await cleanupLab(paths);
        return 1;
      }
    }
    if (child.pid === undefined || !alive(child.pid)) {
      io.stderr.write(`the lab supervisor exited during start-up:\n${readLogTail(logPath, 40)}\n`);
      await cleanupLab(paths);
      return 1;
    }
  }
}

function tails(s: LabStateValue, paths: LabPaths): string {
  const out = [
    `--- ${relative(paths.root, join(paths.logs, 'lab.log'))}`,
    readLogTail(join(paths.logs, 'lab.log'), 20),
  ];
  for (const p of s.processes) {
    const t = readLogTail(p.log, 5);
    if (/error|fatal|fail/i.test(t)) out.push(`--- ${relative(paths.root, p.log)}`, t);
  }
  return out.join('\n') + '\n';
}

function summary(s: LabStateValue, paths: LabPaths, seconds: number): string {
  const fam = s.families.join('+');
  const rel = (p: string) => relative(process.cwd(), p) || '.';
  const lines = [
    `lab ${s.prefix} is up: ${s.nodes.length} nodes, ${fam}, in ${seconds.toFixed(1)} s`,
    `  KUBECONFIG   ${rel(paths.kubeconfig)}    (e.g. KUBECONFIG=${rel(paths.kubeconfig)} tools/bin/kubectl get nodes -o wide)`,
    `  apiserver    ${s.apiserver ?? '-'}`,
    `  NATS         ${s.natsUrl ?? '-'}   TLS CA ${s.natsCa === undefined ? '-' : rel(s.natsCa)}`,
    s.natsToken === undefined
      ? `  NATS creds   ${s.natsCreds === undefined ? '-' : `${rel(s.natsCreds)}/<identity>.creds`}    (e.g. NATS_CREDS=${s.natsCreds === undefined ? '-' : rel(join(s.natsCreds, 'operator.creds'))} NATS_CA=… npx dyad ipam list)`
      : `  NATS token   ${rel(s.natsToken)}    (NATS_TOKEN_FILE=${rel(s.natsToken)} NATS_IDENTITY=operator NATS_CA=… npx dyad ipam list)`,
    ...(s.jaeger ? [`  Jaeger       ${s.jaeger.queryUrl}    (traces: UI and /api/traces)`] : []),
    `  pod pools    ${Object.values(s.podPools).join('  ')}`,
    `  services     ${s.serviceRange}`,
    ...s.nodes.map(
      (n) =>
        `  ${n.name.padEnd(12)} ${s.families.map((f) => n.addresses[f] ?? '').join('  ')}   netns ${n.netns}`,
    ),
    ...s.warnings.map((w) => `  warning: ${w}`),
    `  logs ${rel(paths.logs)}/   state ${rel(paths.state)}   stop: npm run lab -- down`,
    '',
  ];
  return lines.join('\n');
}

/** `lab down`: stops and removes everything of this lab directory's runs. */
export async function labDown(
  args: readonly string[],
  io: LabIo,
  paths: LabPaths = labPaths(),
): Promise<number> {
  if (args.length > 0) throw new LabUsageError(`down takes no arguments (got ${args.join(' ')})`);
  requireRoot();
  const prefixes = ownedPrefixes(paths);
  const netns = listNetns().filter((n) => prefixes.some((p) => n.startsWith(`${p}-`)));
  const processes = new Set(pidsWithEnv(ENV_DIR, paths.dir));
  for (const p of prefixes) for (const pid of pidsWithEnv(ENV_RUN, p)) processes.add(pid);
  const r = await cleanupLab(paths);
  if (r.prefixes.length === 0 && processes.size === 0) {
    io.stdout.write('no lab was running; nothing to remove\n');
  } else {
    io.stdout.write(
      `lab ${r.prefixes.join(', ') || '(unknown)'} stopped and removed: ${processes.size} processes, ${netns.length} network namespaces, its bpffs pins and sockets\n`,
    );
  }
  return 0;
}

/** What `lab status -o json` prints: whether the supervisor runs, the state, the pods. */
export interface LabStatusReport {
  readonly running: boolean;
  readonly state?: Omit<LabStateValue, 'processes'> & {
    readonly processes: ReadonlyArray<LabStateValue['processes'][number] & { alive: boolean }>;
  };
  readonly pods: readonly PodRecordValue[];
}

export function labStatusReport(paths: LabPaths = labPaths()): LabStatusReport {
  const s = readState(paths.state);
  return {
    running: s !== undefined && alive(s.supervisorPid),
    ...(s === undefined
      ? {}
      : { state: { ...s, processes: s.processes.map((p) => ({ ...p, alive: alive(p.pid) })) } }),
    pods: listPodRecords(paths.pods),
  };
}

/** Exit 0 when the lab is ready: its supervisor runs and its phase is `ready`. */
export function labReady(r: LabStatusReport): boolean {
  return r.running && r.state?.phase === 'ready';
}

/** `lab status [-o json]`: the lab's state, its processes and pods. Exit 0 when ready. */
export function labStatus(
  args: readonly string[],
  io: LabIo,
  paths: LabPaths = labPaths(),
): number {
  const json = args.includes('-o')
    ? args[args.indexOf('-o') + 1] === 'json'
    : args.includes('--output=json') || args.includes('-ojson');
  const report = labStatusReport(paths);
  if (json) {
    io.stdout.write(JSON.stringify(report) + '\n');
    return labReady(report) ? 0 : 1;
  }
  io.stdout.write(formatLabStatus(report, paths));
  return labReady(report) ? 0 : 1;
}

/** The human form of `lab status`. */
export function formatLabStatus(report: LabStatusReport, paths: LabPaths): string {
  const s = report.state;
  const up = report.running;
  const pods = report.pods;
  if (s === undefined) return 'no lab (start one with: npm run lab -- up)\n';
  const lines = [
    `lab ${s.prefix}: ${up ? s.phase : `${s.phase}, but its supervisor (pid ${s.supervisorPid}) is gone: run npm run lab -- down`}${s.error ? ` (${s.error})` : ''}`,
    `  since ${s.startedAt}; ${s.nodes.length} nodes, ${s.families.join('+')}; KUBECONFIG ${relative(process.cwd(), paths.kubeconfig)}`,
    ...(s.jaeger ? [`  Jaeger ${s.jaeger.queryUrl}`] : []),
    '  processes:',
    ...s.processes.map(
      (p) =>
        `    ${p.name.padEnd(22)} pid ${String(p.pid).padEnd(8)} ${p.alive ? 'running' : 'DEAD   '} restarts ${p.restarts}${p.netns ? `  netns ${p.netns}` : ''}`,
    ),
    `  pods: ${pods.length}`,
    ...pods.map(
      (p) =>
        `    ${`${p.namespace}/${p.name}`.padEnd(30)} ${p.node.padEnd(10)} ${p.podIPs.join('  ')}`,
    ),
    '',
  ];
  return lines.join('\n');
}

export const LAB_USAGE = [
  'usage: npm run lab -- up [--nodes N] [--ipv4=false|--ipv6=false] [--kubelet] [--tracing]',
  '       npm run lab -- down',
  '       npm run lab -- status [-o json]',
  '',
].join('\n');

/** Dispatches `up`, `down`, `status`. */
export async function labMain(argv: readonly string[], io: LabIo): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (cmd === 'up') return await labUp(rest, io);
    if (cmd === 'down') return await labDown(rest, io);
    if (cmd === 'status') return labStatus(rest, io);
    io.stderr.write(LAB_USAGE);
    return cmd === undefined || cmd === 'help' || cmd === '--help' ? 0 : 2;
  } catch (err) {
    io.stderr.write(`lab ${cmd}: ${err instanceof Error ? err.message : String(err)}\n`);
    return err instanceof LabUsageError ? 2 : 1;
  }
}
