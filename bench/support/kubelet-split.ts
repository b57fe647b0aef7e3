// Where a kubelet-mode pod's start-up time goes, per pod, from four instants on the machine's one
// clock: the create call, the agent's CNI ADD (its "ADD done" log line: `startedAt`, and the
// line's time as the end), the apiserver first showing `status.podIPs` (the kubelet's status
// sync), the first ICMP echo answered by the pod's kernel from another node (the datapath's
// convergence, independent of anything running in the pod), the lab's pod record
// (kubelet-pods.ts found the sandbox and started the stand-in) and the first TCP connection.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeClient, Prober } from '@dyad/lab';

export interface AddSpan {
  readonly startedAt: number;
  readonly doneAt: number;
}

/**
 * The agent's ADDs by `<namespace>/<pod>`, from its container log as the kubelet writes it (CRI
 * format: `<time> stdout F <line>`; partial lines are skipped). Pure.
 */
export function parseAddLines(text: string): Map<string, AddSpan> {
  const out = new Map<string, AddSpan>();
  for (const line of text.split('\n')) {
    const m = /^\S+ std(?:out|err) F (\{.*\})$/.exec(line);
    if (m?.[1] === undefined) continue;
    let j: unknown;
    try {
      j = JSON.parse(m[1]);
    } catch {
      continue;
    }
    const r = j as {
      msg?: unknown;
      time?: unknown;
      startedAt?: unknown;
      pod?: { namespace?: unknown; name?: unknown };
    };
    if (r.msg !== 'ADD done' || typeof r.startedAt !== 'number' || typeof r.time !== 'string')
      continue;
    const doneAt = Date.parse(r.time);
    if (typeof r.pod?.namespace !== 'string' || typeof r.pod.name !== 'string') continue;
    if (Number.isNaN(doneAt)) continue;
    out.set(`${r.pod.namespace}/${r.pod.name}`, { startedAt: r.startedAt, doneAt });
  }
  return out;
}

/** Every agent container log under the nodes' /var/log/pods directories, parsed. */
export function readAgentAdds(podLogDirs: readonly string[]): Map<string, AddSpan> {
  const out = new Map<string, AddSpan>();
  for (const dir of podLogDirs) {
    let pods: string[];
    try {
      pods = readdirSync(dir).filter((d) => d.startsWith('kube-system_dyad-agent-'));
    } catch {
      continue;
    }
    for (const p of pods) {
      const agentDir = join(dir, p, 'agent');
      let logs: string[];
      try {
        logs = readdirSync(agentDir).filter((f) => f.endsWith('.log'));
      } catch {
        continue;
      }
      for (const f of logs)
        for (const [k, v] of parseAddLines(readFileSync(join(agentDir, f), 'utf8'))) out.set(k, v);
    }
  }
  return out;
}

/** When (wall clock) the apiserver first lists every family in the pod's `status.podIPs`. */
export async function waitPodIps(
  kube: KubeClient,
  ns: string,
  name: string,
  o: { families: number; timeoutMs: number; pollMs: number },
): Promise<{ at: number; ips: string[] }> {
  const until = Date.now() + o.timeoutMs;
  for (;;) {
    const pod = await kube.tryCall<{ status?: { podIPs?: Array<{ ip: string }> } }>(
      'GET',
      `/api/v1/namespaces/${ns}/pods/${name}`,
    );
    const ips = pod?.status?.podIPs?.map((x) => x.ip) ?? [];
    if (ips.length >= o.families) return { at: Date.now(), ips };
    if (Date.now() > until) throw new Error(`pod ${name} has no podIPs after ${o.timeoutMs} ms`);
    await sleep(o.pollMs);
  }
}

/**
 * When (wall clock) `from` first gets an ICMP echo reply from `address`: the pod's kernel
 * answers as soon as the datapath on both nodes carries its address, whatever runs in the pod.
 */
export async function waitIcmp(
  prober: Prober,
  from: string,
  address: string,
  timeoutMs: number,
): Promise<number> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await prober.probeAddress(from, address, 0, 'ICMP', 30);
    if (r.result === 'connected') return Date.now();
    if (Date.now() > until) throw new Error(`${address} answers no ICMP from ${from}`);
  }
}
