import type { Family } from '@dyad/netaddr';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { kernelRequired, kernelSkipReason, repoRoot } from '@dyad/testbed';
import { labDown, labUp } from '../src/commands.ts';
import { labPaths } from '../src/paths.ts';
import type { LabPaths } from '../src/paths.ts';
import { listPodRecords } from '../src/records.ts';
import type { PodRecordValue } from '../src/records.ts';
import { readState } from '../src/state.ts';
import type { LabStateValue } from '../src/state.ts';

/** Why the lab tier cannot run here, or undefined when it can; `pinned` names more tools/bin needs. */
export function labSkipReason(pinned: readonly string[] = []): string | undefined {
  return kernelSkipReason({
    notRoot: 'lab tests need root (netns, eBPF, tc)',
    tools: ['ip', 'nsenter', 'make', 'clang', 'gcc'],
    pinned: ['kube-apiserver', 'etcd', 'nats-server', 'kube-scheduler', ...pinned],
  });
}

/** With DYAD_REQUIRE_KERNEL=1 a skip is a failure. */
export const labRequired = kernelRequired;

const quiet = { write: () => true } as unknown as NodeJS.WritableStream;

/** A lab in its own directory (not the user's `.lab`), started and stopped by the test. */
export class TestLab {
  readonly paths: LabPaths;
  readonly env: NodeJS.ProcessEnv;
  readonly log: string[] = [];

  constructor(name: string) {
    const dir = join(repoRoot(), '.lab', `test-${name}`);
    mkdirSync(dir, { recursive: true });
    this.paths = labPaths(repoRoot(), dir);
    this.env = { ...process.env, DYAD_LAB_DIR: dir, KUBECONFIG: this.paths.kubeconfig };
  }

  async up(args: readonly string[]): Promise<LabStateValue> {
    const out: string[] = [];
    const sink = {
      write: (c: string | Uint8Array) => {
        out.push(String(c));
        return true;
      },
    } as unknown as NodeJS.WritableStream;
    const code = await labUp(args, { stdout: sink, stderr: sink }, this.paths);
    this.log.push(...out);
    if (code !== 0) throw new Error(`lab up failed:\n${out.join('')}`);
    const s = readState(this.paths.state);
    if (s === undefined) throw new Error('no state after up');
    return s;
  }

  async down(): Promise<void> {
    await labDown([], { stdout: quiet, stderr: quiet }, this.paths);
  }

  state(): LabStateValue {
    const s = readState(this.paths.state);
    if (s === undefined) throw new Error('the lab has no state');
    return s;
  }

  kubectl(args: readonly string[], input?: string): string {
    const r = spawnSync(join(repoRoot(), 'tools', 'bin', 'kubectl'), args, {
      env: this.env,
      input,
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  }

  /** kubectl without blocking the event loop (beside a probe loop); stdout, throws on failure. */
  kubectlAsync(args: readonly string[]): Promise<string> {
    return this.toolAsync('kubectl', args);
  }

  /** A binary of tools/bin (kubectl, helm) against this lab, without blocking the event loop. */
  toolAsync(tool: string, args: readonly string[]): Promise<string> {
    const child = spawn(join(repoRoot(), 'tools', 'bin', tool), args, {
      env: this.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    return new Promise((resolve, reject) =>
      child.on('close', (code) =>
        code === 0 ? resolve(out) : reject(new Error(`${tool} ${args.join(' ')}: ${err}`)),
      ),
    );
  }

  pods(): PodRecordValue[] {
    return listPodRecords(this.paths.pods);
  }

  /** Waits until every named pod has a record (running, addresses known) with this many addresses. */
  async waitPods(
    refs: readonly string[],
    families: number,
    timeoutMs = 120_000,
  ): Promise<Map<string, PodRecordValue>> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const byRef = new Map(this.pods().map((p) => [`${p.namespace}/${p.name}`, p]));
      const missing = refs.filter((r) => (byRef.get(r)?.podIPs.length ?? 0) < families);
      if (missing.length === 0) return byRef;
      if (Date.now() > until)
        throw new Error(`pods not running after ${timeoutMs} ms: ${missing.join(', ')}`);
      await sleep(200);
    }
  }

  /** `dyad <args>` as a user runs it (`npx dyad`), against this lab. */
  dyad(args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
    return spawnSync(
      process.execPath,
      [join(repoRoot(), 'packages', 'cli', 'bin', 'dyad.js'), ...args],
      { env: this.env, encoding: 'utf8', timeout: 60_000 },
    );
  }

  /** `dyad lab probe --batch` as a user runs it; returns its output lines. */
  async probeBatch(lines: readonly ProbeLine[], timeoutMs = 1000): Promise<ProbeReply[]> {
    const child = spawn(
      process.execPath,
      [
        join(repoRoot(), 'packages', 'cli', 'bin', 'dyad.js'),
        'lab',
        'probe',
        '--batch',
        '--timeout-ms',
        String(timeoutMs),
      ],
      { env: this.env, stdio: ['pipe', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stdin.end(lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    await new Promise<void>((resolve) => child.on('close', () => resolve()));
    return out
      .trim()
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as ProbeReply);
  }
}

export interface ProbeLine {
  readonly from: string;
  readonly to: string;
  readonly port: number;
  readonly protocol: 'TCP' | 'UDP' | 'ICMP';
  readonly family: Family;
}
export interface ProbeReply extends ProbeLine {
  readonly result: 'connected' | 'blocked' | 'error';
  readonly reason?: string;
}

/** Every ordered pair of distinct pods, each family and protocol given. */
export function matrix(
  refs: readonly string[],
  port: number,
  families: readonly Family[],
  protocols: readonly ('TCP' | 'UDP' | 'ICMP')[] = ['TCP', 'UDP'],
): ProbeLine[] {
  const out: ProbeLine[] = [];
  for (const from of refs) {
    for (const to of refs) {
      if (from === to) continue;
      for (const family of families)
        for (const protocol of protocols) out.push({ from, to, port, protocol, family });
    }
  }
  return out;
}

/**
 * Runs the matrix until every probe connects (probes that failed are retried: a new pod becomes
 * reachable a moment after it is Running) or the deadline passes; returns the last failures.
 */
export async function fullMatrix(
  lab: TestLab,
  lines: readonly ProbeLine[],
  deadlineMs = 60_000,
): Promise<{ failures: ProbeReply[]; rounds: number }> {
  const until = Date.now() + deadlineMs;
  let pending = [...lines];
  let failures: ProbeReply[] = [];
  let rounds = 0;
  while (pending.length > 0) {
    rounds++;
    const replies = await lab.probeBatch(pending);
    failures = replies.filter((r) => r.result !== 'connected');
    if (replies.length !== pending.length)
      throw new Error(`batch answered ${replies.length} of ${pending.length} lines`);
    pending = failures.map(({ from, to, port, protocol, family }) => ({
      from,
      to,
      port,
      protocol,
      family,
    }));
    if (pending.length === 0 || Date.now() > until) break;
    await sleep(500);
  }
  return { failures, rounds };
}

/** A manifest of pods spread round-robin over the nodes, each answering on `port`. */
export function podManifest(
  pods: ReadonlyArray<{ namespace: string; name: string; node: string }>,
  port: number,
): string {
  return pods
    .map(
      (p) => `apiVersion: v1
kind: Pod
metadata: { name: ${p.name}, namespace: ${p.namespace}, labels: { app: ${p.name} } }
spec:
  nodeName: ${p.node}
  containers: [{ name: main, image: none, ports: [{ name: echo, containerPort: ${port} }] }]
`,
    )
    .join('---\n');
}

export { labPaths, readState };
export const REPO = repoRoot();
