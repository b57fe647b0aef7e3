// The identity allocator against a real nats-server: replicas racing for the same label sets and
// numbers, a restart, the grace period before an unused identity is freed, and the leftovers of a
// replica that died between its two writes.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { PolicyIdentityBucket, PolicyIdentityKey, ReservedIdentity } from '@dyad/contracts';
import type { Bus, KvBucket } from '@dyad/bus';
import { connectBus } from '@dyad/bus';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { startNats } from '@dyad/testbed';
import type { NatsServer } from '@dyad/testbed';
import { IdentityAllocationError } from '../src/errors.ts';
import { IdentityStore } from '../src/identity-store.ts';
import { identityLabels, labelSetHash, namespaceLabels } from '../src/labels.ts';

const WAIT = { timeout: 20_000, interval: 25 };
const MIN = ReservedIdentity.firstPod;
const enc = new TextEncoder();
const json = (bytes: Uint8Array | undefined): unknown =>
  JSON.parse(new TextDecoder().decode(bytes));

const labelsOf = (i: number) => identityLabels('x', { app: `app-${i}` }, namespaceLabels('x', {}));

interface Replica {
  readonly store: IdentityStore;
  readonly changes: Array<[number, readonly string[] | undefined]>;
  clock: number;
}

async function replica(
  kv: KvBucket,
  opts: { max?: number; graceMs?: number } = {},
): Promise<Replica> {
  const r: Replica = {
    changes: [],
    clock: 0,
    store: undefined as unknown as IdentityStore,
  };
  const store = new IdentityStore({
    kv,
    logger: createLogger({ service: 'identity-test', level: 'silent' }),
    graceMs: opts.graceMs ?? 1000,
    onChange: (id, labels) => r.changes.push([id, labels]),
    now: () => r.clock,
    max: opts.max ?? MIN + 1000,
  });
  Object.assign(r, { store });
  await store.start();
  return r;
}

describe('identity store over NATS', () => {
  let nats: NatsServer;
  let bus: Bus;
  let kv: KvBucket;
  const replicas: Replica[] = [];

  /** What beforeAll made, undone last first; a set-up that failed half way undoes its half. */
  const teardown: Array<() => Promise<unknown>> = [];

  beforeAll(async () => {
    nats = await startNats();
    teardown.push(() => nats.stop());
    bus = await connectBus({
      servers: nats.url,
      name: 'identity-test',
      logger: createLogger({ service: 'identity-test', level: 'silent' }),
      registry: createMetrics(),
    });
    teardown.push(() => bus.close());
    await bus.ensureKv([PolicyIdentityBucket]);
    kv = await bus.kv(PolicyIdentityBucket.bucket);
  });

  afterAll(async () => {
    for (const r of replicas) await r.store.stop();
    for (const undo of teardown.reverse()) await undo();
  });

  it('two replicas racing for the same label sets agree on one number each, never sharing a number', async () => {
    // A narrow range: the replicas keep colliding on candidate numbers too.
    const a = await replica(kv, { max: MIN + 39 });
    const b = await replica(kv, { max: MIN + 39 });
    replicas.push(a, b);
    const sets = Array.from({ length: 30 }, (_, i) => labelsOf(i));
    // The same order on both: every label set is asked for by both at the same moment.
    const [fromA, fromB] = await Promise.all([
      Promise.all(sets.map((l) => a.store.allocate(l))),
      Promise.all(sets.map((l) => b.store.allocate(l))),
    ]);
    expect(fromA).toEqual(fromB);
    expect(new Set(fromA).size).toBe(30);
    // What the bucket holds says the same: each number names one label set and back.
    for (const [i, labels] of sets.entries()) {
      const id = fromA[i] as number;
      const rec = await kv.get(PolicyIdentityKey.id(id));
      expect(json(rec?.value)).toMatchObject({ labels });
      const ptr = await kv.get(PolicyIdentityKey.labels(labelSetHash(labels)));
      expect(json(ptr?.value)).toMatchObject({ identity: id });
    }
    // Each replica's copy follows the other's allocations.
    await vi.waitFor(() => {
      expect(sets.map((l) => a.store.lookup(l))).toEqual(fromA);
      expect(sets.map((l) => b.store.lookup(l))).toEqual(fromA);
    }, WAIT);
    // The losers' numbers were given back: only the 30 winners are left in the bucket.
    expect(await kv.keys(PolicyIdentityKey.idFilter)).toHaveLength(30);
    // Full range: the next label set cannot get a number.
    await Promise.all(Array.from({ length: 10 }, (_, i) => a.store.allocate(labelsOf(100 + i))));
    await expect(a.store.allocate(labelsOf(200))).rejects.toBeInstanceOf(IdentityAllocationError);
  });

  it('a restarted replica finds every identity where it was, without allocating', async () => {
    const c = await replica(kv);
    replicas.push(c);
    const a = replicas[0] as Replica;
    for (let i = 0; i < 30; i++)
      expect(c.store.lookup(labelsOf(i))).toBe(a.store.lookup(labelsOf(i)));
    expect(c.store.all().size).toBe(40);
    expect(c.changes.filter(([, l]) => l !== undefined)).toHaveLength(40);
  });

  it('frees an identity only after it was unused for the grace period, and every replica hears of it', async () => {
    const [a, b] = replicas as [Replica, Replica];
    const victim = a.store.lookup(labelsOf(0)) as number;
    // Everything but `victim` is in use.
    a.clock = 0;
    expect(await a.store.gc((id) => id !== victim)).toEqual([]);
    a.clock = 999;
    expect(await a.store.gc((id) => id !== victim)).toEqual([]);
    // In use again in between: its grace starts over.
    expect(await a.store.gc(() => true)).toEqual([]);
    a.clock = 1500;
    expect(await a.store.gc((id) => id !== victim)).toEqual([]);
    a.clock = 2600;
    expect(await a.store.gc((id) => id !== victim)).toEqual([victim]);
    expect(a.store.lookup(labelsOf(0))).toBeUndefined();
    expect((await kv.get(PolicyIdentityKey.id(victim)))?.operation).not.toBe('PUT');
    await vi.waitFor(() => {
      expect(b.store.lookup(labelsOf(0))).toBeUndefined();
      expect(b.changes).toContainEqual([victim, undefined]);
    }, WAIT);
    // Asked again, the label set gets a new number: freed ones are not handed out soon after
    // (a and b have a full range of 40; the restarted replica has room above it).
    const c = replicas[2] as Replica;
    await vi.waitFor(() => expect(c.store.lookup(labelsOf(0))).toBeUndefined(), WAIT);
    const again = await c.store.allocate(labelsOf(0));
    expect(again).toBeGreaterThan(MIN + 39);
  });

  it('a number taken by a replica that died before naming its labels is never used, and is freed', async () => {
    const orphan = MIN + 500;
    await kv.create(
      PolicyIdentityKey.id(orphan),
      enc.encode(JSON.stringify({ v: 1, labels: labelsOf(300), createdAt: 0 })),
    );
    const d = await replica(kv, { graceMs: 10 });
    replicas.push(d);
    // Its labels have no identity: the orphan is not one.
    expect(d.store.lookup(labelsOf(300))).toBeUndefined();
    expect(d.store.all().has(orphan)).toBe(false);
    const id = await d.store.allocate(labelsOf(300));
    expect(id).not.toBe(orphan);
    d.clock = 0;
    await d.store.gc((n) => n !== orphan);
    d.clock = 100;
    expect(await d.store.gc((n) => n !== orphan)).toEqual([orphan]);
    expect((await kv.get(PolicyIdentityKey.id(orphan)))?.operation).not.toBe('PUT');
  });

  it('a replica that loses the race for a label set frees the number it took and uses the winner’s', async () => {
    // An interleaving forced: `late` reads each labels key as absent just before `early` writes
    // it, and writes its own only after: it always takes a number, then loses the label set.
    const early = await replica(kv);
    const seen = new Set<string>();
    const lateKv: KvBucket = {
      ...kv,
      get: async (k) => {
        if (k.startsWith(PolicyIdentityKey.labelsPrefix) && !seen.has(k)) {
          seen.add(k);
          return undefined;
        }
        return kv.get(k);
      },
      create: async (k, data) => {
        if (k.startsWith(PolicyIdentityKey.labelsPrefix)) {
          await vi.waitFor(async () => expect((await kv.get(k))?.operation).toBe('PUT'), WAIT);
        }
        return kv.create(k, data);
      },
    };
    const late = await replica(lateKv);
    replicas.push(early, late);
    const sets = Array.from({ length: 5 }, (_, i) => labelsOf(500 + i));
    const [fromLate, fromEarly] = await Promise.all([
      Promise.all(sets.map((l) => late.store.allocate(l))),
      Promise.all(sets.map((l) => early.store.allocate(l))),
    ]);
    expect(fromLate).toEqual(fromEarly);
    // The numbers `late` took on the way were given back: every number left is one a label set names.
    const named = new Set<number>();
    for (const { value } of await kv.values(PolicyIdentityKey.labelsFilter))
      named.add((value as { identity: number }).identity);
    const taken = (await kv.keys(PolicyIdentityKey.idFilter)).map((k) => Number(k.slice(3)));
    expect(taken.filter((n) => !named.has(n))).toEqual([]);
  });

  it('a labels key that names a number held by other labels is replaced, not believed', async () => {
    const e = replicas[0] as Replica;
    const other = e.store.lookup(labelsOf(5)) as number;
    const labels = labelsOf(400);
    await kv.put(
      PolicyIdentityKey.labels(labelSetHash(labels)),
      enc.encode(JSON.stringify({ v: 1, identity: other })),
    );
    await vi.waitFor(() => expect(e.store.lookup(labels)).toBeUndefined(), WAIT);
    const id = await e.store.allocate(labels);
    expect(id).not.toBe(other);
    expect(e.store.lookup(labelsOf(5))).toBe(other);
  });
});
