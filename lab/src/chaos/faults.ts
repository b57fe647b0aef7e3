// The faults, each bounded: it is injected, lasts a known time, and heals (or is healed) before
// run() returns. Processes are the lab's own, found by name in state.json.
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { probe200 } from '@dyad/testbed';
import type { KubeClient } from '../kube-client.ts';
import { readState } from '../state.ts';
import type { LabStateValue } from '../state.ts';
import { alive, kill, run } from '../sys.ts';
import type { ChaosProfile } from './profile.ts';
import { outlastGracesMs } from './profile.ts';

export interface FaultContext {
  readonly statePath: string;
  /** The lab's process logs (`<name>.log`). */
  readonly logsDir: string;
  readonly kube: KubeClient;
  readonly profile: ChaosProfile;
  readonly say: (line: string) => void;
}

export interface Fault {
  readonly name: string;
  /** Injects, waits out the fault's time, heals; returns when the faulted parts run again. */
  run(ctx: FaultContext): Promise<{ from: number; to: number } | undefined>;
  /** The node cut off, for faults during which its forwarding is checked. */
  readonly isolates?: string;
}

function state(ctx: FaultContext): LabStateValue {
  const s = readState(ctx.statePath);
  if (s === undefined) throw new Error('the lab has no state');
  return s;
}

function pidOf(ctx: FaultContext, name: string): number {
  const p = state(ctx).processes.find((x) => x.name === name);
  if (p === undefined) throw new Error(`no process ${name} in the lab`);
  return p.pid;
}

async function until(
  what: string,
  ok: () => Promise<boolean> | boolean,
  timeoutMs = 120_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`${what}: not after ${timeoutMs / 1000} s`);
    await sleep(200);
  }
}

/** Until the supervisor runs `name` again under another pid. */
async function restarted(ctx: FaultContext, name: string, old: number): Promise<void> {
  await until(`${name} restarted`, () => {
    const p = state(ctx).processes.find((x) => x.name === name);
    return p !== undefined && p.pid !== old && alive(p.pid);
  });
}

async function natsHealthy(ctx: FaultContext, names?: readonly string[]): Promise<void> {
  const members = (state(ctx).nats ?? []).filter(
    (m) => names === undefined || names.includes(m.name),
  );
  await until('NATS healthy', async () =>
    (
      await Promise.all(
        members.map(
          async (m) => (await probe200(`${m.monitorUrl}/healthz`).catch(() => false)) === true,
        ),
      )
    ).every(Boolean),
  );
}

async function apiserverAnswers(ctx: FaultContext): Promise<void> {
  await until('kube-apiserver answering', () =>
    ctx.kube.call('GET', '/api/v1/namespaces/default').then(
      () => true,
      () => false,
    ),
  );
}

const killOne = (name: string): Fault => ({
  name: `kill -9 ${name}`,
  run: async (ctx) => {
    const pid = pidOf(ctx, name);
    kill(pid, 'SIGKILL');
    await restarted(ctx, name, pid);
    if (name.startsWith('nats-')) await natsHealthy(ctx);
  },
});

const natsDataLoss = (name: string): Fault => ({
  name: `${name} loses its data dir`,
  run: async (ctx) => {
    const member = (state(ctx).nats ?? []).find((m) => m.name === name);
    if (member === undefined) throw new Error(`no NATS member ${name}`);
    const pid = pidOf(ctx, name);
    // stopped first, so the supervisor cannot restart it before the store is gone
    kill(pid, 'SIGSTOP');
    for (const entry of readdirSync(member.storeDir))
      rmSync(join(member.storeDir, entry), { recursive: true, force: true });
    kill(pid, 'SIGKILL');
    await restarted(ctx, name, pid);
    await natsHealthy(ctx);
  },
});

/** Every server's store emptied at once: a fresh, empty cluster, as after losing every disk. */
const natsClusterDataLoss: Fault = {
  name: 'the whole NATS cluster loses its data',
  run: async (ctx) => {
    const members = (state(ctx).nats ?? []).map((m) => ({ ...m, pid: pidOf(ctx, m.name) }));
    // all stopped first, so none is restarted, or serves, before every store is gone
    for (const m of members) kill(m.pid, 'SIGSTOP');
    for (const m of members)
      for (const entry of readdirSync(m.storeDir))
        rmSync(join(m.storeDir, entry), { recursive: true, force: true });
    for (const m of members) kill(m.pid, 'SIGKILL');
    for (const m of members) await restarted(ctx, m.name, m.pid);
    await natsHealthy(ctx);
    return undefined;
  },
};

const natsClusterRestart: Fault = {
  name: 'the whole NATS cluster restarts',
  run: async (ctx) => {
    const members = (state(ctx).nats ?? []).map((m) => ({ name: m.name, pid: pidOf(ctx, m.name) }));
    for (const m of members) kill(m.pid, 'SIGKILL');
    for (const m of members) await restarted(ctx, m.name, m.pid);
    await natsHealthy(ctx);
  },
};

const apiserverKill: Fault = {
  name: 'kill -9 kube-apiserver',
  run: async (ctx) => {
    const pid = state(ctx).apiserverPid;
    if (pid === undefined) throw new Error('the lab records no kube-apiserver pid');
    kill(pid, 'SIGKILL');
    await until('kube-apiserver restarted', () => {
      const now = state(ctx).apiserverPid;
      return now !== undefined && now !== pid;
    });
    await apiserverAnswers(ctx);
  },
};

const kubeBridgeOutage: Fault = {
  name: 'kube-bridge down longer than every GC grace',
  run: async (ctx) => {
    const pid = pidOf(ctx, 'kube-bridge');
    // stopped, not killed: the supervisor would restart a dead one at once
    kill(pid, 'SIGSTOP');
    await sleep(outlastGracesMs(ctx.profile));
    kill(pid, 'SIGKILL');
    await restarted(ctx, 'kube-bridge', pid);
  },
};

/** etcd's current revision, then a compaction up to it: every older resourceVersion is gone. */
async function compactEtcd(etcdUrl: string): Promise<number> {
  const post = async (path: string, body: unknown): Promise<Record<string, unknown>> => {
    const res = await fetch(`${etcdUrl}${path}`, { method: 'POST', body: JSON.stringify(body) });
    if (!res.ok) throw new Error(`etcd ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as Record<string, unknown>;
  };
  const range = await post('/v3/kv/range', { key: Buffer.from('/').toString('base64') });
  const revision = Number((range['header'] as { revision?: string } | undefined)?.revision);
  if (!Number.isFinite(revision)) throw new Error('etcd gave no revision');
  await post('/v3/kv/compaction', { revision: String(revision), physical: true });
  return revision;
}

/** kube-bridge's log line for a watch whose resourceVersion expired (services/kube-bridge, bridge.ts). */
const WATCH_EXPIRED = 'watch expired (410 Gone)';

function expiries(ctx: FaultContext): number {
  try {
    return (
      readFileSync(join(ctx.logsDir, 'kube-bridge.log'), 'utf8').split(WATCH_EXPIRED).length - 1
    );
  } catch {
    return 0;
  }
}

const watchExpiry: Fault = {
  name: 'watch expiry: etcd compacted past kube-bridge, apiserver restarted',
  run: async (ctx) => {
    const s = state(ctx);
    if (s.etcdUrl === undefined || s.apiserverPid === undefined)
      throw new Error('the lab records no etcd URL or apiserver pid');
    const bridge = pidOf(ctx, 'kube-bridge');
    const before = expiries(ctx);
    // kube-bridge falls behind while pods change, etcd forgets every revision it saw, and the
    // apiserver restarts with an empty watch cache: no watch can resume where it stopped. The
    // apiserver gets SIGTERM, which ends each watch response cleanly: kube-bridge, on
    // resuming, reads a finished watch (not a broken connection), re-watches from the
    // resourceVersion it last saw and gets 410 Gone. (SIGKILL would break the connections, and
    // kube-bridge would list afresh without ever being told its position expired.)
    kill(bridge, 'SIGSTOP');
    try {
      await sleep(3000);
      const revision = await compactEtcd(s.etcdUrl);
      ctx.say(`  etcd compacted at revision ${revision}`);
      // SIGTERM ends the watches at once; the rest of a graceful shutdown (up to a minute of
      // draining) is not the fault: SIGKILL after 10 s, by when the ends have been written
      const pid = s.apiserverPid;
      kill(pid, 'SIGTERM');
      await until('kube-apiserver stopped', () => !alive(pid), 10_000).catch(() =>
        kill(pid, 'SIGKILL'),
      );
      await until('kube-apiserver restarted', () => state(ctx).apiserverPid !== pid);
      await apiserverAnswers(ctx);
    } finally {
      kill(bridge, 'SIGCONT');
    }
    // the fault is only a fault if a watch really expired: kube-bridge says so per kind
    await until('kube-bridge told 410 Gone', () => expiries(ctx) > before, 60_000);
    ctx.say(`  kube-bridge told 410 Gone (${expiries(ctx) - before} watches so far)`);
    return undefined;
  },
};

/** The node's traffic to every NATS server dropped inside its netns (its relays listen there). */
const partition = (node: string): Fault => ({
  name: `${node} cut off from NATS`,
  isolates: node,
  run: async (ctx) => {
    const s = state(ctx);
    const netns = s.nodes.find((n) => n.name === node)?.netns;
    if (netns === undefined) throw new Error(`no node ${node}`);
    const ports = (s.nats ?? []).map((m) => new URL(m.url).port).join(',');
    const rule = ['INPUT', '-p', 'tcp', '-m', 'multiport', '--ports', ports, '-j', 'DROP'];
    run('ip', ['netns', 'exec', netns, 'iptables', '-w', '-I', ...rule]);
    const from = Date.now();
    try {
      await sleep(ctx.profile.partitionMs);
    } finally {
      run('ip', ['netns', 'exec', netns, 'iptables', '-w', '-D', ...rule]);
    }
    return { from, to: Date.now() };
  },
});

/** The suite, in order: each fault alone, the cluster checked after each. */
export function faults(nodes: readonly string[]): Fault[] {
  const victim = nodes[1] ?? nodes[0] ?? 'node-1';
  return [
    killOne('nats-1'),
    killOne('nats-2'),
    killOne('nats-3'),
    killOne('ipam-1'),
    killOne('router'),
    killOne('policy'),
    killOne('kube-bridge'),
    killOne(`agent-${victim}`),
    apiserverKill,
    natsDataLoss('nats-2'),
    natsClusterRestart,
    natsClusterDataLoss,
    kubeBridgeOutage,
    watchExpiry,
    partition(victim),
  ];
}
