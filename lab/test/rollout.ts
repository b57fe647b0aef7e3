// Helpers of the kubelet-mode rollout tests: a TCP connection held open from one pod to another
// across an agent rollout, a probe loop, and a watch of the agents' readiness per node.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ProbeLine, ProbeReply, TestLab } from './helpers.ts';

// Runs in the source pod's netns: one connection to the target's echo port, a byte every 100 ms,
// each expected back. Prints one JSON line when stdin closes.
const HOLDER = `
const net = require('node:net');
const [host, port] = [process.argv[1], Number(process.argv[2])];
let sent = 0, echoed = 0, closed = '';
const s = net.connect({ host, port }, () => {
  process.stdout.write('connected\\n');
  const t = setInterval(() => { s.write('x'); sent++; }, 100);
  process.stdin.on('end', () => {
    clearInterval(t);
    setTimeout(() => { process.stdout.write(JSON.stringify({ sent, echoed, closed }) + '\\n'); process.exit(0); }, 500);
  });
  process.stdin.resume();
});
s.on('data', (d) => (echoed += d.length));
s.on('error', (e) => (closed = String(e)));
s.on('close', () => (closed ||= 'closed'));
`;

export interface HeldResult {
  readonly sent: number;
  readonly echoed: number;
  /** Empty while the connection stayed open. */
  readonly closed: string;
}

/** An established TCP connection from `netns` to host:port; `finish()` stops and reports it. */
export class HeldConnection {
  readonly #child: ChildProcess;
  readonly #lines: string[] = [];

  private constructor(child: ChildProcess) {
    this.#child = child;
    if (child.stdout === null) throw new Error('no stdout');
    createInterface({ input: child.stdout }).on('line', (l) => this.#lines.push(l));
  }

  static async open(netns: string, host: string, port: number): Promise<HeldConnection> {
    const child = spawn(
      'nsenter',
      [`--net=/run/netns/${netns}`, process.execPath, '-e', HOLDER, host, String(port)],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    const held = new HeldConnection(child);
    for (let i = 0; !held.#lines.includes('connected'); i++) {
      if (i > 100 || child.exitCode !== null) throw new Error(`no connection to ${host}:${port}`);
      await sleep(50);
    }
    return held;
  }

  async finish(): Promise<HeldResult> {
    this.#child.stdin?.end();
    await new Promise<void>((resolve) => this.#child.once('close', () => resolve()));
    const last = this.#lines.at(-1) ?? '{}';
    return JSON.parse(last) as HeldResult;
  }
}

/** Probes `lines` in rounds until `done()`; returns every failed reply with its round. */
export async function probeLoop(
  lab: TestLab,
  lines: readonly ProbeLine[],
  done: () => boolean,
): Promise<{ rounds: number; failures: Array<ProbeReply & { round: number }> }> {
  const failures: Array<ProbeReply & { round: number }> = [];
  let rounds = 0;
  while (!done()) {
    rounds++;
    const replies = await lab.probeBatch(lines);
    for (const r of replies) if (r.result !== 'connected') failures.push({ ...r, round: rounds });
  }
  return { rounds, failures };
}

interface AgentPod {
  metadata: { name: string; uid: string; deletionTimestamp?: string };
  spec: { nodeName?: string; containers: Array<{ image: string }> };
  status?: { conditions?: Array<{ type: string; status: string }> };
}

/**
 * Watches the agent pods while a rollout runs: per poll, the nodes without a ready agent. A
 * rollout that takes one node at a time never shows two such nodes at once.
 */
export async function watchAgents(
  lab: TestLab,
  done: () => boolean,
): Promise<{ polls: number; maxNodesWithoutReadyAgent: number; uidsSeen: Set<string> }> {
  let polls = 0;
  let max = 0;
  const uidsSeen = new Set<string>();
  const nodes = (
    JSON.parse(lab.kubectl(['get', 'nodes', '-o', 'json'])) as {
      items: Array<{ metadata: { name: string } }>;
    }
  ).items.map((n) => n.metadata.name);
  while (!done()) {
    polls++;
    const out = await lab.kubectlAsync([
      '-n',
      'kube-system',
      'get',
      'pods',
      '-l',
      'app.kubernetes.io/component=agent',
      '-o',
      'json',
    ]);
    const pods = (JSON.parse(out) as { items: AgentPod[] }).items;
    for (const p of pods) uidsSeen.add(p.metadata.uid);
    const readyNodes = new Set(
      pods
        .filter(
          (p) =>
            p.metadata.deletionTimestamp === undefined &&
            p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
        )
        .map((p) => p.spec.nodeName),
    );
    max = Math.max(max, nodes.filter((n) => !readyNodes.has(n)).length);
    await sleep(100);
  }
  return { polls, maxNodesWithoutReadyAgent: max, uidsSeen };
}
