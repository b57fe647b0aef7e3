import { IpamKey } from '@dyad/contracts';
import type { Family } from '@dyad/contracts';
import { afterEach, describe, expect, it } from 'vitest';
import type { AllocateInput } from '../src/allocator.ts';
import { AllocationError } from '../src/allocator.ts';
import { StoreError } from '../src/errors.ts';
import type { NodeBlocks } from '../src/record.ts';
import type { IpamTable } from '../src/table.ts';
import { FakeKv } from './fake-kv.ts';
import { DUAL, SMALL, fakeReplica, sandboxRequest } from './fake-replica.ts';
import type { FakeReplica } from './fake-replica.ts';

const started: IpamTable[] = [];
afterEach(() => {
  for (const t of started.splice(0)) t.stop();
});

/** One replica: its own table (watching the bucket unless told not to) and allocator. */
function replica(kv: FakeKv, name: string, watch = true): Promise<FakeReplica> {
  return fakeReplica(kv, name, watch, started);
}

function req(i: number, over: Partial<AllocateInput> = {}): AllocateInput {
  return sandboxRequest(i, DUAL, over);
}

/** The slot keys holding a container id, from the bucket itself. */
function slotsOf(kv: FakeKv, containerId: string): string[] {
  return kv
    .liveKeys('slot.>')
    .filter((k) => (kv.json(k) as { containerId: string }).containerId === containerId);
}

function ownerSlot(kv: FakeKv, node: string, containerId: string): number | undefined {
  return (kv.json(IpamKey.owner(node, containerId)) as { slot: number } | undefined)?.slot;
}

describe('allocation protocol', () => {
  it('a new sandbox gets one slot: both addresses, an owner record pointing at it', async () => {
    const kv = new FakeKv();
    const r = await replica(kv, 'a');
    const out = await r.allocator.allocate(req(1));
    expect(out.created).toBe(true);
    expect(out.record.ips.IPv4?.startsWith('198.18.4.')).toBe(true);
    expect(out.record.ips.IPv4?.split('.')[3]).toBe(String(out.slot + 2));
    expect(out.record.ips.IPv6).toBe(`fd00:d1ad::4${(out.slot + 2).toString(16).padStart(2, '0')}`);
    expect(slotsOf(kv, 'c1')).toEqual([IpamKey.slot('n1', out.slot)]);
    expect(ownerSlot(kv, 'n1', 'c1')).toBe(out.slot);
  });

  it('a repeated request returns the same pair and gives back the slot it claimed meanwhile', async () => {
    const kv = new FakeKv();
    const r = await replica(kv, 'a');
    const first = await r.allocator.allocate(req(1));
    const again = await r.allocator.allocate(req(1));
    expect(again).toMatchObject({ slot: first.slot, created: false, record: first.record });
    expect(slotsOf(kv, 'c1')).toEqual([IpamKey.slot('n1', first.slot)]);
    expect(kv.liveKeys('slot.>')).toHaveLength(1);
    expect(ownerSlot(kv, 'n1', 'c1')).toBe(first.slot);
  });

  it('a repeated request on a full node still gets its pair', async () => {
    const kv = new FakeKv();
    const r = await replica(kv, 'a');
    const outs = [];
    for (let i = 0; i < 13; i++) outs.push(await r.allocator.allocate(req(i, { blocks: SMALL })));
    const again = await r.allocator.allocate(req(5, { blocks: SMALL }));
    expect(again).toMatchObject({ slot: outs[5]?.slot, created: false });
    await expect(r.allocator.allocate(req(13, { blocks: SMALL }))).rejects.toMatchObject({
      code: 'exhausted',
    });
  });

  it('the same request sent to two replicas at once yields one pair and one slot', async () => {
    const kv = new FakeKv();
    const a = await replica(kv, 'a');
    const b = await replica(kv, 'b');
    for (let i = 0; i < 40; i++) {
      const [x, y] = await Promise.all([
        a.allocator.allocate(req(i)),
        b.allocator.allocate(req(i)),
      ]);
      expect(x.slot).toBe(y.slot);
      expect(x.record.ips).toEqual(y.record.ips);
      expect([x.created, y.created].filter(Boolean)).toHaveLength(1);
      expect(slotsOf(kv, `c${i}`)).toEqual([IpamKey.slot('n1', x.slot)]);
      expect(ownerSlot(kv, 'n1', `c${i}`)).toBe(x.slot);
    }
  });

  it('two replicas allocating at once, even blind to each other, never share a slot', async () => {
    const kv = new FakeKv();
    // No watch: each replica learns of the other's claims only by losing a write.
    const a = await replica(kv, 'a', false);
    const b = await replica(kv, 'b', false);
    const outs = await Promise.all(
      Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? a : b).allocator.allocate(req(i))),
    );
    const v4 = new Set(outs.map((o) => o.record.ips.IPv4));
    const v6 = new Set(outs.map((o) => o.record.ips.IPv6));
    expect(v4.size).toBe(200);
    expect(v6.size).toBe(200);
    expect(kv.liveKeys('slot.>')).toHaveLength(200);
    for (let i = 0; i < 200; i++) expect(ownerSlot(kv, 'n1', `c${i}`)).toBe(outs[i]?.slot);
  });

  it('fills a node to the last slot, then reports exhaustion naming the family', async () => {
    const kv = new FakeKv();
    const a = await replica(kv, 'a');
    const b = await replica(kv, 'b');
    const blocks = SMALL;
    const outs = await Promise.all(
      Array.from({ length: 13 }, (_, i) => (i % 2 ? a : b).allocator.allocate(req(i, { blocks }))),
    );
    expect(new Set(outs.map((o) => o.slot)).size).toBe(13);
    const before = kv.liveKeys('slot.>').map((k) => [k, kv.last.get(k)?.rev]);
    const err = await a.allocator.allocate(req(99, { blocks })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AllocationError);
    expect(err).toMatchObject({ code: 'exhausted', family: 'IPv4' });
    expect(String(err)).toMatch(/node n1 .*IPv4 block 198\.18\.0\.0\/28 is full/);
    // Nothing of the refused sandbox stays, and no claim changed.
    expect(kv.liveKeys('slot.>').map((k) => [k, kv.last.get(k)?.rev])).toEqual(before);
    expect(kv.json(IpamKey.owner('n1', 'c99'))).toBeUndefined();
  });

  it('does not call a node full while a claim of its own may yet come to nothing', async () => {
    const kv = new FakeKv();
    const a = await replica(kv, 'a');
    const b = await replica(kv, 'b');
    const blocks = SMALL;
    for (let i = 0; i < 11; i++) await a.allocator.allocate(req(i, { blocks }));
    const held = await b.allocator.allocate(req(99, { blocks }));
    // One slot is left. Replica a gets a repeat of c99's request: it picks the free slot as a
    // hint and writes the owner record, which is held up; meanwhile it gets a new sandbox.
    let release = (): void => undefined;
    const gate = new Promise<void>((r) => (release = r));
    kv.fault.holdWrite = (key) => (key === IpamKey.owner('n1', 'c99') ? gate : undefined);
    const repeat = a.allocator.allocate(req(99, { blocks }));
    await new Promise((r) => setTimeout(r, 20));
    const fresh = a.allocator.allocate(req(100, { blocks })).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 20));
    kv.fault.holdWrite = undefined;
    release();
    // The repeat finds c99's slot and gives up the one it picked, which the new sandbox gets.
    expect(await repeat).toMatchObject({ slot: held.slot, created: false });
    const got = await fresh;
    expect(got).not.toBeInstanceOf(Error);
    expect(got).toMatchObject({ created: true });
    expect(kv.liveKeys('slot.>')).toHaveLength(13);
  });

  it('an owner write whose ack is lost keeps its claim: the retry answers with it', async () => {
    const kv = new FakeKv();
    const r = await replica(kv, 'a');
    kv.failNext('after', (key) => key === IpamKey.owner('n1', 'c1'));
    await expect(r.allocator.allocate(req(1))).rejects.toBeInstanceOf(StoreError);
    // The owner names the claim: a retry racing this one may already have answered with it, so
    // giving the claim back would hand the address to the next sandbox while this one uses it.
    const slot = ownerSlot(kv, 'n1', 'c1');
    expect(slot).toBeDefined();
    expect(slotsOf(kv, 'c1')).toEqual([IpamKey.slot('n1', slot ?? -1)]);
    expect(await r.allocator.allocate(req(1))).toMatchObject({ slot, created: false });
  });

  it('an owner write that did not happen is fenced off before its claim is given back', async () => {
    const kv = new FakeKv();
    const r = await replica(kv, 'a');
    kv.failNext('before', (key) => key === IpamKey.owner('n1', 'c1'));
    await expect(r.allocator.allocate(req(1))).rejects.toBeInstanceOf(StoreError);
    // A late copy of the write (it expected revision 0) can no longer land, so the claim is gone.
    expect(kv.json(IpamKey.owner('n1', 'c1'))).toMatchObject({ released: expect.any(Number) });
    expect(slotsOf(kv, 'c1')).toEqual([]);
    const again = await r.allocator.allocate(req(1));
    expect(again.created).toBe(true);
    expect(ownerSlot(kv, 'n1', 'c1')).toBe(again.slot);
  });

  it('a claim whose ack is lost, or that was not written, leaves no slot taken', async () => {
    const kv = new FakeKv();
    const r = await replica(kv, 'a');
    const fail = (when: 'before' | 'after') =>
      kv.failNext(when, (key, op) => key.startsWith('slot.') && op === 'PUT');
    fail('after');
    await expect(r.allocator.allocate(req(1))).rejects.toBeInstanceOf(StoreError);
    expect(kv.liveKeys('slot.>')).toEqual([]);
    fail('before');
    await expect(r.allocator.allocate(req(2))).rejects.toBeInstanceOf(StoreError);
    expect(kv.liveKeys('slot.>')).toEqual([]);
    expect(kv.json(IpamKey.owner('n1', 'c1'))).toBeUndefined();
    expect((await r.allocator.allocate(req(1))).created).toBe(true);
  });

  it('a container id held by another pod UID is refused', async () => {
    const kv = new FakeKv();
    const r = await replica(kv, 'a');
    await r.allocator.allocate(req(1));
    await expect(r.allocator.allocate(req(1, { podUid: 'someone-else' }))).rejects.toMatchObject({
      code: 'owner-mismatch',
    });
    expect(slotsOf(kv, 'c1')).toHaveLength(1);
  });

  it('an owner naming a slot its sandbox no longer holds is pointed at the new claim', async () => {
    const kv = new FakeKv();
    const r = await replica(kv, 'a');
    // slot 9 was freed under the owner (a release or GC midway)
    await kv
      .asKv()
      .put(
        IpamKey.owner('n1', 'c7'),
        new TextEncoder().encode(JSON.stringify({ slot: 9, podUid: 'uid-7', at: 1 })),
      );
    const out = await r.allocator.allocate(req(7));
    expect(out.created).toBe(true);
    expect(slotsOf(kv, 'c7')).toEqual([IpamKey.slot('n1', out.slot)]);
    expect(ownerSlot(kv, 'n1', 'c7')).toBe(out.slot);
  });

  it('an owner pointing at a slot another sandbox holds is moved to a slot of its own', async () => {
    const kv = new FakeKv();
    const r = await replica(kv, 'a');
    const other = await r.allocator.allocate(req(1));
    await kv
      .asKv()
      .put(
        IpamKey.owner('n1', 'c2'),
        new TextEncoder().encode(JSON.stringify({ slot: other.slot, podUid: 'uid-2', at: 1 })),
      );
    const out = await r.allocator.allocate(req(2));
    expect(out.slot).not.toBe(other.slot);
    expect(ownerSlot(kv, 'n1', 'c2')).toBe(out.slot);
    expect(slotsOf(kv, 'c1')).toEqual([IpamKey.slot('n1', other.slot)]);
  });

  it('a write that fails mid-allocation leaves nothing a retry cannot settle into one pair', async () => {
    const kv = new FakeKv();
    const r = await replica(kv, 'a');
    for (let i = 0; i < 30; i++) {
      let n = 0;
      // Fail the i-th write of this allocation (owner, slot, or a later repair write).
      kv.fault.beforeWrite = (key) => {
        if (key.startsWith('sync.')) return;
        if (n++ === i % 3) throw new Error('injected: connection lost');
      };
      const first = await r.allocator.allocate(req(i)).catch((e: unknown) => e);
      kv.fault = {};
      const again = await r.allocator.allocate(req(i));
      if (!(first instanceof Error)) expect(again.slot).toBe((first as { slot: number }).slot);
      expect(ownerSlot(kv, 'n1', `c${i}`)).toBe(again.slot);
      // At most one stray claim (from the failed attempt), which GC removes as an orphan.
      const held = slotsOf(kv, `c${i}`);
      expect(held).toContain(IpamKey.slot('n1', again.slot));
      expect(held.length).toBeLessThanOrEqual(2);
    }
  });

  it('a repeated request asking for a family the first did not adds it on the same slot', async () => {
    const kv = new FakeKv();
    const r = await replica(kv, 'a');
    const v4 = await r.allocator.allocate(req(1, { families: ['IPv4'] as Family[] }));
    expect(v4.record.ips).toEqual({ IPv4: expect.any(String) as unknown });
    const both = await r.allocator.allocate(req(1));
    expect(both.slot).toBe(v4.slot);
    expect(both.record.ips.IPv4).toBe(v4.record.ips.IPv4);
    expect(both.record.ips.IPv6).toBeDefined();
  });
});

describe('release protocol', () => {
  it('frees the slot, marks the owner released; again is already; a stranger is not-allocated', async () => {
    const kv = new FakeKv();
    const r = await replica(kv, 'a');
    const out = await r.allocator.allocate(req(1));
    const rel = await r.allocator.releaseContainer('n1', 'c1');
    expect(rel).toMatchObject({ kind: 'released', held: [{ slot: out.slot }] });
    expect(kv.liveKeys('slot.>')).toEqual([]);
    expect(kv.json(IpamKey.owner('n1', 'c1'))).toMatchObject({
      released: expect.any(Number) as unknown,
    });
    expect(await r.allocator.releaseContainer('n1', 'c1')).toEqual({ kind: 'already' });
    expect(await r.allocator.releaseContainer('n1', 'never')).toEqual({ kind: 'not-allocated' });
  });

  it('a released container id allocates afresh', async () => {
    const kv = new FakeKv();
    const r = await replica(kv, 'a');
    await r.allocator.allocate(req(1));
    await r.allocator.releaseContainer('n1', 'c1');
    const again = await r.allocator.allocate(req(1));
    expect(again.created).toBe(true);
    expect(ownerSlot(kv, 'n1', 'c1')).toBe(again.slot);
    expect(slotsOf(kv, 'c1')).toHaveLength(1);
  });

  it('by pod UID frees every sandbox of the pod, and only those', async () => {
    const kv = new FakeKv();
    const r = await replica(kv, 'a');
    await r.allocator.allocate(req(1, { podUid: 'P' }));
    await r.allocator.allocate(req(2, { podUid: 'P' }));
    await r.allocator.allocate(req(3));
    const rel = await r.allocator.releasePod('n1', 'P');
    expect(rel.kind === 'released' && rel.held.map((h) => h.record.containerId).sort()).toEqual([
      'c1',
      'c2',
    ]);
    expect(
      kv.liveKeys('slot.>').map((k) => (kv.json(k) as { containerId: string }).containerId),
    ).toEqual(['c3']);
    expect(await r.allocator.releasePod('n1', 'P')).toEqual({ kind: 'already' });
    expect(await r.allocator.releasePod('n1', 'nobody')).toEqual({ kind: 'not-allocated' });
  });

  it('a freed slot is claimed again over its delete marker', async () => {
    const kv = new FakeKv();
    const r = await replica(kv, 'a');
    const blocks: NodeBlocks = { IPv4: { cidr: '198.18.0.4/30', gateway: '198.18.0.5' } }; // one slot
    const a = await r.allocator.allocate(req(1, { blocks, families: ['IPv4'] }));
    await r.allocator.releaseContainer('n1', 'c1');
    const b = await r.allocator.allocate(req(2, { blocks, families: ['IPv4'] }));
    expect(b.slot).toBe(a.slot);
    expect(b.record.ips.IPv4).toBe('198.18.0.6');
  });

  it('GC releases a gone pod only if the slot is still the claim it saw', async () => {
    const kv = new FakeKv();
    const r = await replica(kv, 'a');
    const out = await r.allocator.allocate(req(1));
    const rev = kv.last.get(IpamKey.slot('n1', out.slot))?.rev ?? -1;
    expect(await r.allocator.releaseGone('n1', out.slot, rev - 1, out.record)).toBe(false);
    expect(kv.liveKeys('slot.>')).toHaveLength(1);
    expect(await r.allocator.releaseGone('n1', out.slot, rev, out.record)).toBe(true);
    expect(kv.liveKeys('slot.>')).toHaveLength(0);
    expect(kv.json(IpamKey.owner('n1', 'c1'))).toMatchObject({
      released: expect.any(Number) as unknown,
    });
  });

  it('store failures surface as StoreError, not as an answer', async () => {
    const kv = new FakeKv();
    const r = await replica(kv, 'a');
    kv.fault.beforeWrite = (key) => {
      if (!key.startsWith('sync.'))
        throw Object.assign(new Error('timeout'), { name: 'TimeoutError' });
    };
    await expect(r.allocator.allocate(req(1))).rejects.toBeInstanceOf(StoreError);
  });
});
