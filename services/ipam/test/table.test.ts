import { describe, expect, it, vi } from 'vitest';
import { StoreError } from '../src/errors.ts';
import { IpamTable, snapshotSlots } from '../src/table.ts';
import { FakeKv } from './fake-kv.ts';

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

describe('the watch-fed table', () => {
  it('sync resolves even when the watch delivers the marker before the write is acknowledged', async () => {
    const kv = new FakeKv();
    const t = new IpamTable();
    await t.start(kv.asKv(), (err) => {
      throw err;
    });
    kv.fault.ackDelayTicks = 20;
    await kv.asKv().put('slot.n1.4', enc({}));
    await t.sync(kv.asKv(), 'r1');
    expect(t.slotState('n1', 4)).toMatchObject({ live: true });
    t.stop();
  }, 10_000);

  it('knows the revision of a released slot, so a claim expects the delete marker', async () => {
    const kv = new FakeKv();
    const t = new IpamTable();
    await t.start(kv.asKv(), (err) => {
      throw err;
    });
    const rev = await kv.asKv().put('slot.n1.0', enc({}));
    await kv.asKv().delete('slot.n1.0', { previousSeq: rev });
    await t.sync(kv.asKv(), 'r1');
    expect(t.slotState('n1', 0)).toEqual({ rev: kv.last.get('slot.n1.0')?.rev, live: false });
    t.stop();
  });

  it('a watch that fails is opened again and catches up; meanwhile sync fails instead of waiting', async () => {
    const kv = new FakeKv();
    const t = new IpamTable();
    const errors: unknown[] = [];
    await t.start(kv.asKv(), (err) => errors.push(err));
    expect(t.following).toBe(true);
    // The consumers are lost, and for a while the server refuses new ones.
    kv.fault.beforeWatch = () => {
      throw new Error('no JetStream');
    };
    kv.failWatches(new Error('consumer lost'));
    await vi.waitFor(() => expect(errors.length).toBeGreaterThanOrEqual(3), { timeout: 5000 });
    expect(t.following).toBe(false);
    await kv.asKv().put('slot.n1.3', enc({}));
    await expect(t.sync(kv.asKv(), 'r1', 200)).rejects.toBeInstanceOf(StoreError);
    // Back: the table follows again, with what was written while it could not.
    kv.fault.beforeWatch = undefined;
    await vi.waitFor(() => expect(t.following).toBe(true), { timeout: 10_000 });
    await t.sync(kv.asKv(), 'r1');
    expect(t.slotState('n1', 3)).toMatchObject({ live: true });
    t.stop();
  }, 20_000);

  it('picks each free slot once until settled, wraps round, and says when the node is full', () => {
    const t = new IpamTable();
    const picked = new Set<number>();
    for (let i = 0; i < 4; i++) picked.add(t.pick('n1', 4)?.slot ?? -1);
    expect([...picked].sort()).toEqual([0, 1, 2, 3]);
    expect(t.pick('n1', 4)).toBeUndefined();
    t.settle('n1', 2);
    expect(t.pick('n1', 4)).toEqual({ slot: 2, expected: 0 });
    t.noteSlot('n1', 2, 9, true);
    t.settle('n1', 2);
    t.settle('n1', 1);
    expect(t.pick('n1', 4)?.slot).toBe(1);
    expect(t.used('n1', 4)).toBe(1);
  });

  it('a lost claim marks the slot taken with an unknown revision, never overriding a known live one', () => {
    const t = new IpamTable();
    t.noteSlot('n1', 0, 5, false);
    t.noteTaken('n1', 0);
    expect(t.slotState('n1', 0)).toEqual({ rev: -1, live: true });
    t.noteSlot('n1', 1, 7, true);
    t.noteTaken('n1', 1);
    expect(t.slotState('n1', 1)).toEqual({ rev: 7, live: true });
    // an older revision from a lagging watch does not undo a newer one
    t.noteSlot('n1', 1, 6, false);
    expect(t.slotState('n1', 1)).toEqual({ rev: 7, live: true });
  });

  it('a snapshot of slot values reflects deletes and stops at its marker', async () => {
    const kv = new FakeKv();
    const k = kv.asKv();
    await k.put('slot.n1.0', enc({ a: 1 }));
    const r = await k.put('slot.n1.1', enc({ a: 2 }));
    await k.delete('slot.n1.1', { previousSeq: r });
    await k.put('node.n1', enc({}));
    const snap = await snapshotSlots(k, 'sync.gc');
    expect(snap.map((e) => e.key)).toEqual(['slot.n1.0']);
  });
});
