// The node agent's allocator, as `npm run bench -- ipam` reports it: pod addresses come from the
// node's own blocks (services/datapath-agent), in memory, and are on disk (write, fsync, rename,
// fsync of the directory) before a CNI result returns.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GroupCommitFile, NodeAllocator } from '@dyad/datapath-agent';

const BLOCKS = [
  { family: 'IPv4' as const, cidr: '198.18.0.0/24', gateway: '198.18.0.1' },
  { family: 'IPv6' as const, cidr: 'fd00:d1ad::/120', gateway: 'fd00:d1ad::1' },
];

function allocator(): NodeAllocator {
  const a = new NodeAllocator();
  a.setBlocks(BLOCKS);
  // a node with 110 pods, the kubelet's default maximum: the state written is that large
  for (let i = 0; i < 110; i++)
    a.allocate({ containerId: `resident-${i}`, pod: { namespace: 'bench', name: `r${i}` } });
  return a;
}

/** Allocations and releases per second, in memory only. */
function pure(ops: number): number {
  const a = allocator();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) {
    const id = `c${i}`;
    const r = a.allocate({ containerId: id, pod: { namespace: 'bench', name: id } });
    if (!r.ok) throw new Error(`allocation ${i} failed: ${r.message}`);
    a.release(id);
  }
  return ops / (Number(process.hrtime.bigint() - t0) / 1e9);
}

/**
 * Pods per second through allocate → durable commit → release → durable commit, `width` at a
 * time: with 1 every commit is its own fsync'ed write (the floor a per-call fsync would give),
 * with more they share writes (group commit), as concurrent CNI calls do in the agent.
 */
async function durable(pods: number, width: number): Promise<{ perS: number; writes: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'dyad-bench-alloc-'));
  try {
    const a = allocator();
    const file = new GroupCommitFile(join(dir, 'state.json'), () => JSON.stringify(a.toJSON()));
    let next = 0;
    const t0 = process.hrtime.bigint();
    await Promise.all(
      Array.from({ length: width }, async () => {
        while (next < pods) {
          const id = `d${next++}`;
          const r = a.allocate({ containerId: id, pod: { namespace: 'bench', name: id } });
          if (!r.ok) throw new Error(`allocation failed: ${r.message}`);
          await file.commit();
          a.release(id);
          await file.commit();
        }
      }),
    );
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    return { perS: pods / seconds, writes: file.stats().writes };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The allocator's keys of the ipam bench summary. */
export async function measureNodeAllocator(
  log: (line: string) => void,
): Promise<Record<string, number>> {
  const allocs = pure(200_000);
  log(
    `agent allocator, in memory (a /24 + /120 node with 110 pods): ${allocs.toFixed(0)} allocate+release/s`,
  );
  const serial = await durable(300, 1);
  log(
    `agent allocator, durable, one pod at a time: ${serial.perS.toFixed(0)} pods/s (${serial.writes} writes)`,
  );
  const grouped = await durable(2000, 64);
  log(
    `agent allocator, durable, 64 at a time (group commit): ${grouped.perS.toFixed(0)} pods/s (${grouped.writes} writes for 4,000 commits)`,
  );
  return {
    agent_allocs_per_s: Math.round(allocs),
    agent_durable_pods_per_s: Math.round(grouped.perS),
    agent_durable_serial_pods_per_s: Math.round(serial.perS),
    agent_group_commit_gain: Number((grouped.perS / serial.perS).toFixed(2)),
  };
}
