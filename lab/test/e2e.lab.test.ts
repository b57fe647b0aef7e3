import { FAMILIES } from '@dyad/netaddr';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, test, vi } from 'vitest';
import { Prober } from '../src/probe.ts';
import { alive } from '../src/sys.ts';
import { TestLab, fullMatrix, labRequired, labSkipReason, matrix, podManifest } from './helpers.ts';

// End to end: one lab at a time (each `up` replaces the previous one of this directory), so the
// scenarios run in order in this one file.
const skip = labSkipReason();
if (skip && labRequired()) test('lab tier is required', () => expect.fail(skip));

const PORT = 8080;
const NODE_REACH = join(import.meta.dirname, 'node-reach.ts');
const NODES = ['node-1', 'node-2', 'node-3'];

function spread(count: number, namespaces: readonly string[]) {
  return Array.from({ length: count }, (_, i) => ({
    namespace: namespaces[i % namespaces.length] ?? 'default',
    name: `pod-${i}`,
    node: NODES[i % NODES.length] ?? 'node-1',
  }));
}

describe.skipIf(skip !== undefined)('lab: 3 nodes, dual-stack', () => {
  const lab = new TestLab('e2e');
  const pods = spread(12, ['alpha', 'beta']);
  const refs = pods.map((p) => `${p.namespace}/${p.name}`);

  beforeAll(async () => {
    await lab.up(['--nodes', '3']);
    lab.kubectl(['create', 'namespace', 'alpha']);
    lab.kubectl(['create', 'namespace', 'beta']);
    lab.kubectl(['apply', '-f', '-'], podManifest(pods, PORT));
    await lab.waitPods(refs, 2);
  }, 600_000);

  afterAll(async () => {
    await lab.down();
  }, 120_000);

  it('registers three Ready nodes with both families and gives every pod one address per family, IPv4 first', () => {
    const nodes = JSON.parse(lab.kubectl(['get', 'nodes', '-o', 'json'])) as {
      items: Array<{ status: { addresses: Array<{ type: string; address: string }> } }>;
    };
    expect(nodes.items).toHaveLength(3);
    for (const n of nodes.items) {
      const internal = n.status.addresses
        .filter((a) => a.type === 'InternalIP')
        .map((a) => a.address);
      expect(internal.some((a) => a.startsWith('198.19.'))).toBe(true);
      expect(internal.some((a) => a.startsWith('fd'))).toBe(true);
    }
    const k8sPods = JSON.parse(lab.kubectl(['get', 'pods', '-A', '-o', 'json'])) as {
      items: Array<{ status: { phase: string; podIPs: Array<{ ip: string }> } }>;
    };
    expect(k8sPods.items).toHaveLength(12);
    for (const p of k8sPods.items) {
      expect(p.status.phase).toBe('Running');
      expect(p.status.podIPs.map((x) => (x.ip.includes(':') ? 'IPv6' : 'IPv4'))).toEqual([
        'IPv4',
        'IPv6',
      ]);
      expect(p.status.podIPs[0]?.ip.startsWith('198.18.')).toBe(true);
    }
  });

  it("dyad --node N reads node N's agent through the lab's plugin; dyad lab exec enters a pod", () => {
    for (const node of NODES) {
      const s = lab.dyad(['status', '--node', node, '-o', 'json']);
      expect(s.stderr).toBe('');
      expect(s.status).toBe(0);
      expect((JSON.parse(s.stdout) as { node: string }).node).toBe(node);
      const e = lab.dyad(['endpoint', 'list', '--node', node, '-o', 'json']);
      expect(e.status).toBe(0);
      const mine = pods.filter((p) => p.node === node).map((p) => `${p.namespace}/${p.name}`);
      const listed = (JSON.parse(e.stdout) as Array<{ pod: { namespace: string; name: string } }>)
        .map((x) => `${x.pod.namespace}/${x.pod.name}`)
        .sort();
      expect(listed).toEqual([...mine].sort());
    }
    const unknown = lab.dyad(['status', '--node', 'node-9']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain('--node node-9: the lab');
    const exec = lab.dyad(['lab', 'exec', refs[0] ?? '', '--', 'ip', '-o', 'addr', 'show', 'eth0']);
    expect(exec.status).toBe(0);
  });

  it('every pod reaches every other over IPv4 and IPv6, TCP and UDP', async () => {
    const lines = matrix(refs, PORT, ['IPv4', 'IPv6']);
    expect(lines).toHaveLength(12 * 11 * 4);
    const { failures } = await fullMatrix(lab, lines);
    expect(failures).toEqual([]);
  }, 300_000);

  it("each node's own stack reaches pods on the other nodes over TCP and ICMP in both families", async () => {
    const state = lab.state();
    const records = lab.pods();
    for (const node of state.nodes) {
      const remote = records.find((p) => p.node !== node.name);
      if (!remote) throw new Error(`no pod off ${node.name}`);
      for (const address of remote.podIPs) {
        // the node's routes to other nodes' blocks follow the router's messages: converge first
        await vi.waitFor(
          () => {
            const r = spawnSync(
              'nsenter',
              [
                `--net=/run/netns/${node.netns}`,
                process.execPath,
                NODE_REACH,
                address,
                String(PORT),
              ],
              { encoding: 'utf8' },
            );
            expect(
              JSON.parse(r.stdout || '{}'),
              `${node.name} -> ${remote.name} ${address}`,
            ).toEqual({ tcp: true, icmp: true });
          },
          { timeout: 30_000, interval: 500 },
        );
      }
    }
  });

  it('a deleted pod’s old addresses stop answering from every node; its replacement answers in both families', async () => {
    const victim = pods[0];
    if (victim === undefined) throw new Error('no pod');
    const ref = `${victim.namespace}/${victim.name}`;
    const before = (await lab.waitPods([ref], 2)).get(ref);
    const oldIPs = before?.podIPs ?? [];
    expect(oldIPs).toHaveLength(2);
    lab.kubectl(['-n', victim.namespace, 'delete', 'pod', victim.name, '--wait=true']);
    const fresh = { ...victim, name: 'pod-new' };
    lab.kubectl(['apply', '-f', '-'], podManifest([fresh], PORT));
    const freshRef = `${fresh.namespace}/${fresh.name}`;
    const after = (await lab.waitPods([freshRef], 2)).get(freshRef);
    expect(after?.node).toBe(victim.node);

    // One source pod on each node (none of them the deleted one).
    const sources = NODES.map((n) => pods.find((p) => p.node === n && p !== victim)).map(
      (p) => `${p?.namespace}/${p?.name}`,
    );
    const prober = new Prober({ podsDir: lab.paths.pods });
    try {
      for (const from of sources) {
        for (const addr of oldIPs) {
          for (const protocol of ['TCP', 'UDP'] as const) {
            // Gone for good: it may take a moment after the delete for every node to learn it.
            let r = await prober.probeAddress(from, addr, PORT, protocol, 500);
            for (let i = 0; i < 20 && r.result === 'connected'; i++) {
              await sleep(250);
              r = await prober.probeAddress(from, addr, PORT, protocol, 500);
            }
            expect(r.result, `${from} -> old ${addr} ${protocol}`).toBe('blocked');
          }
        }
      }
    } finally {
      prober.close();
    }
    const lines = sources.flatMap((from) =>
      FAMILIES.flatMap((family) =>
        (['TCP', 'UDP'] as const).map((protocol) => ({
          from,
          to: freshRef,
          port: PORT,
          protocol,
          family,
        })),
      ),
    );
    const { failures } = await fullMatrix(lab, lines, 30_000);
    expect(failures).toEqual([]);
    refs[0] = freshRef;
  }, 300_000);

  it('kill -9 of router, both ipam replicas and one agent during a probe loop: the matrix is full again without a manual step', async () => {
    const loopLines = matrix(refs, PORT, ['IPv4', 'IPv6'], ['TCP']).filter((_, i) => i % 5 === 0);
    const prober = new Prober({ podsDir: lab.paths.pods, preload: true });
    // Per probe: when it last succeeded, and the longest time it went without success.
    const lastOk = new Map<string, number>();
    let longestGapMs = 0;
    let failedAttempts = 0;
    let attempts = 0;
    const intervals: number[] = [];
    // set by a callback: declared boolean so TypeScript does not take the loop's test for constant
    let stop = false as boolean;
    const loop = (async () => {
      while (!stop) {
        await Promise.all(
          loopLines.map(async (l) => {
            const key = `${l.from}>${l.to}/${l.family}`;
            const r = await prober.probe(l, 500);
            const now = Date.now();
            attempts++;
            if (r.result === 'connected') {
              const prev = lastOk.get(key);
              if (prev !== undefined) {
                longestGapMs = Math.max(longestGapMs, now - prev);
                intervals.push(now - prev);
              }
              lastOk.set(key, now);
            } else {
              failedAttempts++;
            }
          }),
        );
        await sleep(100);
      }
    })();
    await sleep(1500);
    const victims = ['router', 'ipam-1', 'ipam-2', 'agent-node-2'];
    const before = lab.state().processes.filter((p) => victims.includes(p.name));
    expect(before.map((p) => p.name).sort()).toEqual([...victims].sort());
    for (const p of before) process.kill(p.pid, 'SIGKILL');
    // The supervisor brings each back under a new pid.
    const until = Date.now() + 120_000;
    for (;;) {
      const now = lab.state().processes;
      const back = victims.every((v) => {
        const p = now.find((x) => x.name === v);
        return p !== undefined && p.pid !== before.find((b) => b.name === v)?.pid && alive(p.pid);
      });
      if (back) break;
      if (Date.now() > until) throw new Error('killed processes did not come back');
      await sleep(200);
    }
    // The restarted ones work: a new pod on node-2 gets addresses (ipam), is wired (agent) and
    // reachable from the other nodes (router).
    const late = { namespace: 'beta', name: 'pod-late', node: 'node-2' };
    lab.kubectl(['apply', '-f', '-'], podManifest([late], PORT));
    await lab.waitPods([`beta/pod-late`], 2);
    await sleep(3000);
    stop = true;
    await loop;
    prober.close();
    const all = [...refs, 'beta/pod-late'];
    const { failures } = await fullMatrix(lab, matrix(all, PORT, ['IPv4', 'IPv6']), 90_000);
    expect(failures).toEqual([]);
    intervals.sort((a, b) => a - b);
    console.log(
      `probe loop while router, ipam x2 and agent-node-2 restarted: longest gap between successes of one probe ${longestGapMs} ms ` +
        `(median interval ${intervals[Math.floor(intervals.length / 2)] ?? 0} ms), ${failedAttempts} of ${attempts} attempts failed`,
    );
    expect(lastOk.size).toBe(loopLines.length);
  }, 600_000);
});

for (const [label, args, family] of [
  ['IPv4-only', ['--ipv6=false'], 'IPv4'],
  ['IPv6-only', ['--ipv4=false'], 'IPv6'],
] as const) {
  describe.skipIf(skip !== undefined)(`lab: 3 nodes, ${label}`, () => {
    const lab = new TestLab(label.toLowerCase());
    const pods = spread(6, ['solo']);
    const refs = pods.map((p) => `${p.namespace}/${p.name}`);

    beforeAll(async () => {
      await lab.up(['--nodes', '3', ...args]);
      lab.kubectl(['create', 'namespace', 'solo']);
      lab.kubectl(['apply', '-f', '-'], podManifest(pods, PORT));
      await lab.waitPods(refs, 1);
    }, 600_000);

    afterAll(async () => {
      await lab.down();
    }, 120_000);

    it(`pods have only ${family} addresses and the ${family} matrix is full (TCP and UDP)`, async () => {
      for (const p of lab.pods()) {
        expect(p.podIPs).toHaveLength(1);
        expect(p.podIPs[0]?.includes(':')).toBe(family === 'IPv6');
      }
      const { failures } = await fullMatrix(lab, matrix(refs, PORT, [family]));
      expect(failures).toEqual([]);
      const other = family === 'IPv4' ? 'IPv6' : 'IPv4';
      const replies = await lab.probeBatch(matrix(refs.slice(0, 2), PORT, [other], ['TCP']));
      expect(replies.map((r) => r.result)).toEqual(['error', 'error']);
    }, 300_000);
  });
}
