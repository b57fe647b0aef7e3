// The allocation protocol under random interleavings: three replicas (one blind to the others'
// writes) serve sandboxes on a node with fewer slots than sandboxes, while the in-memory KV delays
// each write a random number of event-loop turns and, in half the runs, refuses some writes or
// loses their acks. Each sandbox behaves as an agent does: an ADD (sometimes raced by its retry
// on another replica), then a DEL, retried until IPAM takes it. Seeded, so a failure reproduces.
import { IpamKey } from '@dyad/contracts';
import { afterEach, describe, expect, it } from 'vitest';
import type { AllocateInput } from '../src/allocator.ts';
import type { Allocator } from '../src/allocator.ts';
import type { IpamTable } from '../src/table.ts';
import { prng } from '@dyad/testbed';
import { FakeKv } from './fake-kv.ts';
import { SMALL, fakeReplica, sandboxRequest } from './fake-replica.ts';

const SANDBOXES = 20;
const ROUNDS = 3;
const SEEDS = Number(process.env['DYAD_PROTOCOL_SEEDS'] ?? '300');

const turns = async (n: number): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
};

const started: IpamTable[] = [];
afterEach(() => {
  for (const t of started.splice(0)) t.stop();
});

async function replica(kv: FakeKv, name: string, watch: boolean): Promise<Allocator> {
  return (await fakeReplica(kv, name, watch, started)).allocator;
}

/** On a node with 13 pod slots: fewer than the sandboxes, so it fills. */
function req(i: number): AllocateInput {
  return sandboxRequest(i, SMALL);
}

interface Run {
  /** Problems found; empty when every invariant held. */
  readonly problems: string[];
  readonly allocated: number;
  readonly exhausted: number;
  readonly orphans: number;
}

async function run(seed: number, faults: boolean): Promise<Run> {
  const rnd = prng(seed);
  const kv = new FakeKv();
  const replicas = [
    await replica(kv, 'a', true),
    await replica(kv, 'b', true),
    await replica(kv, 'blind', false),
  ];
  const pick = (): Allocator => replicas[Math.floor(rnd() * replicas.length)] as Allocator;
  kv.fault = {
    holdWrite: () => (rnd() < 0.5 ? undefined : turns(Math.floor(rnd() * 6))),
    ...(faults
      ? {
          beforeWrite: () => {
            if (rnd() < 0.03) throw new Error('injected: write refused');
          },
          afterWrite: () => {
            if (rnd() < 0.03) throw new Error('injected: ack lost');
          },
        }
      : {}),
  };
  const problems: string[] = [];
  /** Sandboxes that are up (their ADD answered, no DEL begun), by the slot they were given. */
  const liveBySlot = new Map<number, string>();
  let allocated = 0;
  let exhausted = 0;

  const sandbox = async (i: number): Promise<void> => {
    const r = req(i);
    await turns(Math.floor(rnd() * 20));
    for (let round = 0; round < ROUNDS; round++) {
      // ADD: the agent's request, raced by its retry on another replica a third of the time
      const attempts = rnd() < 0.33 ? [pick(), pick()] : [pick()];
      const outs = await Promise.allSettled(attempts.map((a) => a.allocate(r)));
      const ok = outs.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
      for (const o of outs) {
        if (o.status === 'rejected') {
          const code = (o.reason as { code?: string }).code;
          if (code === 'exhausted') exhausted++;
          else if (!/injected|did not settle|taken by another replica/.test(String(o.reason)))
            problems.push(`c${i}: unexpected failure ${String(o.reason)}`);
        }
      }
      const first = ok[0];
      if (first !== undefined) {
        allocated++;
        for (const o of ok.slice(1)) {
          if (o.slot !== first.slot)
            problems.push(`c${i}: a retry got slot ${o.slot}, the request slot ${first.slot}`);
        }
        const holder = liveBySlot.get(first.slot);
        if (holder !== undefined && holder !== r.containerId)
          problems.push(`slot ${first.slot} given to c${i} while ${holder} is up`);
        liveBySlot.set(first.slot, r.containerId);
        await turns(Math.floor(rnd() * 10));
        if (round === ROUNDS - 1 && rnd() < 0.5) return; // stays up
        liveBySlot.delete(first.slot);
      }
      // DEL (also after a failed ADD), retried until IPAM takes it, as the agent does
      for (let tries = 0; ; tries++) {
        try {
          await pick().releaseContainer('n1', r.containerId);
          break;
        } catch (err) {
          if (tries > 50) {
            problems.push(`c${i}: release never went through: ${String(err)}`);
            break;
          }
        }
      }
    }
  };
  await Promise.all(Array.from({ length: SANDBOXES }, (_, i) => sandbox(i)));
  kv.fault = {};
  await turns(50);

  // What the bucket says at the end, against what the sandboxes were told.
  const slotHolder = new Map<number, string>();
  for (const key of kv.liveKeys(`${IpamKey.slotPrefix}n1.*`)) {
    slotHolder.set(
      Number(key.split('.')[2]),
      (kv.json(key) as { containerId: string }).containerId,
    );
  }
  for (const [slot, c] of liveBySlot) {
    if (slotHolder.get(slot) !== c)
      problems.push(
        `${c} is up on slot ${slot}, which the bucket gives to ${slotHolder.get(slot)}`,
      );
    const owner = kv.json(IpamKey.owner('n1', c)) as
      { slot: number; released?: number } | undefined;
    if (owner?.slot !== slot || owner.released !== undefined)
      problems.push(`${c} is up on slot ${slot}; its owner record says ${JSON.stringify(owner)}`);
  }
  // A slot held by a sandbox whose owner does not point at it is an orphan: GC's to remove. Without
  // injected faults the protocol leaves none.
  let orphans = 0;
  for (const [slot, c] of slotHolder) {
    const owner = kv.json(IpamKey.owner('n1', c)) as
      { slot: number; released?: number } | undefined;
    const up = liveBySlot.get(slot) === c;
    if (!up && owner?.slot === slot && owner.released === undefined)
      problems.push(`${c} holds slot ${slot} with a live owner after its DEL`);
    if (owner?.slot !== slot || owner.released !== undefined) orphans++;
  }
  if (!faults && orphans > 0) problems.push(`${orphans} orphan slot(s) without any fault`);
  return { problems, allocated, exhausted, orphans };
}

describe('allocation protocol under random interleavings', () => {
  let exhausted = 0;
  it.each(Array.from({ length: SEEDS }, (_, s) => [s + 1, s % 2 === 1] as const))(
    'seed %i (write faults: %s): no address given twice, retries agree, DEL leaves no live claim',
    async (seed, faults) => {
      const r = await run(seed, faults);
      expect(r.problems).toEqual([]);
      expect(r.allocated).toBeGreaterThan(SANDBOXES);
      exhausted += r.exhausted;
    },
  );

  it('the runs did fill the node', () => {
    expect(exhausted).toBeGreaterThan(0);
  });
});
