import type { NodeBlockValue } from '@dyad/contracts';
import { describe, expect, test } from 'vitest';
import { BlocksChangeError, NodeBlocksError, StateError } from '../src/errors.ts';
import type { Allocation, AllocateRequest, Holder, PodOwner } from '../src/ipam/allocator.ts';
import { NodeAllocator, nextFreeSlot } from '../src/ipam/allocator.ts';

const v4 = (cidr: string, gateway: string): NodeBlockValue => ({ family: 'IPv4', cidr, gateway });
const v6 = (cidr: string, gateway: string): NodeBlockValue => ({ family: 'IPv6', cidr, gateway });

/** Set k: a /29 (5 pod addresses) and a /125 (6): 5 slots. */
function set(k: number): NodeBlockValue[] {
  const o = 8 * k;
  return [
    v4(`198.18.0.${o}/29`, `198.18.0.${o + 1}`),
    v6(`fd00:d1ad::${o.toString(16)}/125`, `fd00:d1ad::${(o + 1).toString(16)}`),
  ];
}

const T0 = new Date('2026-12-06T00:00:00.000Z');

function allocator(sets = 1): NodeAllocator {
  let tick = 0;
  const a = new NodeAllocator({ now: () => new Date(T0.getTime() + 1000 * tick++) });
  if (sets > 0) a.setBlocks(Array.from({ length: sets }, (_, k) => set(k)).flat());
  return a;
}

const pod = (name: string, uid?: string): PodOwner =>
  uid === undefined ? { namespace: 'default', name } : { namespace: 'default', name, uid };

const req = (containerId: string, extra: Partial<AllocateRequest> = {}): AllocateRequest => ({
  containerId,
  pod: pod(`p-${containerId}`, `uid-${containerId}`),
  ...extra,
});

function ok(r: ReturnType<NodeAllocator['allocate']>): Allocation {
  if (!r.ok) throw new Error(`${r.reason}: ${r.message}`);
  return r;
}

function blocksRefused(a: NodeAllocator, list: NodeBlockValue[]): BlocksChangeError {
  const before = JSON.stringify(a.toJSON());
  try {
    a.setBlocks(list);
  } catch (e) {
    expect(JSON.stringify(a.toJSON())).toBe(before);
    if (e instanceof BlocksChangeError) return e;
    throw e;
  }
  throw new Error('accepted');
}

describe('allocate', () => {
  test('no-blocks until the node has a set', () => {
    expect(allocator(0).allocate(req('c1'))).toMatchObject({ ok: false, reason: 'no-blocks' });
  });

  test('one address per family, in the cluster order, with block and gateway', () => {
    const r = ok(allocator().allocate(req('c1')));
    expect(r).toEqual({
      ok: true,
      slot: 0,
      fresh: true,
      allocatedAt: T0.toISOString(),
      addresses: [
        { family: 'IPv4', address: '198.18.0.2', cidr: '198.18.0.0/29', gateway: '198.18.0.1' },
        {
          family: 'IPv6',
          address: 'fd00:d1ad::2',
          cidr: 'fd00:d1ad::/125',
          gateway: 'fd00:d1ad::1',
        },
      ],
    });
  });

  test('a repeat is the same slot and time, not fresh', () => {
    const a = allocator();
    const first = ok(a.allocate(req('c1')));
    expect(ok(a.allocate(req('c1')))).toEqual({ ...first, fresh: false });
    expect(a.free()).toBe(4);
  });

  test('owner-mismatch for another pod name or UID; a missing UID is no contradiction', () => {
    const a = allocator();
    ok(a.allocate({ containerId: 'c1', pod: pod('web', 'u1') }));
    for (const other of [
      pod('db', 'u1'),
      pod('web', 'u2'),
      { namespace: 'kube-system', name: 'web' },
    ]) {
      expect(a.allocate({ containerId: 'c1', pod: other })).toMatchObject({
        ok: false,
        reason: 'owner-mismatch',
        holder: { containerId: 'c1', slot: 0, pod: pod('web', 'u1') },
      });
    }
    expect(ok(a.allocate({ containerId: 'c1', pod: pod('web') })).slot).toBe(0);
  });

  test('family-disabled for a family the blocks lack', () => {
    const a = new NodeAllocator();
    a.setBlocks([v4('198.18.0.0/29', '198.18.0.1')]);
    expect(a.allocate(req('c1', { families: ['IPv6'] }))).toMatchObject({
      ok: false,
      reason: 'family-disabled',
    });
    expect(ok(a.allocate(req('c1', { families: ['IPv4'] }))).addresses).toHaveLength(1);
  });

  test('families asked: only those, in the cluster order; a repeat asking more gets them at its slot', () => {
    const a = allocator();
    ok(a.allocate(req('c0')));
    const v6only = ok(a.allocate(req('c1', { families: ['IPv6'] })));
    expect(v6only.addresses.map((x) => x.address)).toEqual(['fd00:d1ad::3']);
    const both = ok(a.allocate(req('c1', { families: ['IPv6', 'IPv4'] })));
    expect(both).toMatchObject({ slot: 1, fresh: false });
    expect(both.addresses.map((x) => x.address)).toEqual(['198.18.0.3', 'fd00:d1ad::3']);
    expect(a.holder('c1')?.families).toEqual(['IPv4', 'IPv6']);
  });

  test('round robin: a released slot comes back only after every other free one', () => {
    const a = allocator();
    const slots = ['a', 'b', 'c'].map((id) => ok(a.allocate(req(id))).slot);
    expect(slots).toEqual([0, 1, 2]);
    expect(a.release('a')).toBe('released');
    expect(ok(a.allocate(req('d'))).slot).toBe(3);
    expect(ok(a.allocate(req('e'))).slot).toBe(4);
    expect(ok(a.allocate(req('f'))).slot).toBe(0); // wrapped round to the freed one
  });

  test('exhausted when every slot is held, until one is released', () => {
    const a = allocator();
    for (let i = 0; i < 5; i++) ok(a.allocate(req(`c${i}`)));
    expect(a.allocate(req('c5'))).toMatchObject({ ok: false, reason: 'exhausted' });
    expect(a.free()).toBe(0);
    a.release('c2');
    expect(ok(a.allocate(req('c5'))).slot).toBe(2);
  });
});

describe('release', () => {
  test('released, then not-allocated', () => {
    const a = allocator();
    ok(a.allocate(req('c1')));
    expect(a.release('c1')).toBe('released');
    expect(a.release('c1')).toBe('not-allocated');
    expect(a.holder('c1')).toBeUndefined();
    expect(a.holderOfSlot(0)).toBeUndefined();
    expect(a.free()).toBe(5);
  });
});

describe('reserve', () => {
  test('takes the given slot and leaves the cursor where it was', () => {
    const a = allocator();
    const r = a.reserve({ ...req('legacy'), slot: 3, allocatedAt: '2026-01-01T00:00:00.000Z' });
    expect(r).toMatchObject({
      ok: true,
      slot: 3,
      fresh: true,
      allocatedAt: '2026-01-01T00:00:00.000Z',
    });
    expect(ok(a.allocate(req('c1'))).slot).toBe(0);
    expect(a.reserve({ ...req('legacy'), slot: 3 })).toMatchObject({ ok: true, fresh: false });
  });

  test('refuses a slot another container holds, naming it', () => {
    const a = allocator();
    ok(a.allocate(req('c1')));
    expect(a.reserve({ ...req('c2'), slot: 0 })).toMatchObject({
      ok: false,
      reason: 'slot-taken',
      holder: { containerId: 'c1', slot: 0 },
    });
    expect(a.holder('c2')).toBeUndefined();
  });

  test('refuses a container that holds another slot', () => {
    const a = allocator();
    ok(a.allocate(req('c1')));
    expect(a.reserve({ ...req('c1'), slot: 2 })).toMatchObject({
      ok: false,
      reason: 'container-elsewhere',
      holder: { containerId: 'c1', slot: 0 },
    });
  });

  test('out-of-range, no-blocks, owner-mismatch, family-disabled', () => {
    expect(allocator(0).reserve({ ...req('c1'), slot: 0 })).toMatchObject({ reason: 'no-blocks' });
    const a = allocator();
    expect(a.reserve({ ...req('c1'), slot: 5 })).toMatchObject({ reason: 'out-of-range' });
    expect(a.reserve({ ...req('c1'), slot: -1 })).toMatchObject({ reason: 'out-of-range' });
    ok(a.allocate(req('c1')));
    expect(a.reserve({ containerId: 'c1', pod: pod('other'), slot: 0 })).toMatchObject({
      reason: 'owner-mismatch',
    });
    const v4only = new NodeAllocator();
    v4only.setBlocks([v4('198.18.0.0/29', '198.18.0.1')]);
    expect(v4only.reserve({ ...req('c1'), slot: 0, families: ['IPv6'] })).toMatchObject({
      reason: 'family-disabled',
    });
  });
});

describe('setBlocks', () => {
  test('an appended set adds its slots; the search goes on into it', () => {
    const a = allocator();
    for (let i = 0; i < 5; i++) ok(a.allocate(req(`c${i}`)));
    expect(a.setBlocks([...set(0), ...set(1)])).toEqual({
      changed: true,
      stale: false,
      sets: 2,
      renumbered: 0,
    });
    expect(a.capacity()).toBe(10);
    expect(ok(a.allocate(req('c5'))).addresses.map((x) => x.address)).toEqual([
      '198.18.0.10',
      'fd00:d1ad::a',
    ]);
    expect(a.setBlocks([...set(0), ...set(1)])).toEqual({
      changed: false,
      stale: false,
      sets: 2,
      renumbered: 0,
    });
  });

  test('after a full node grows, a just-released slot waits behind the new set', () => {
    const a = allocator();
    for (let i = 0; i < 5; i++) ok(a.allocate(req(`c${i}`)));
    a.release('c3');
    a.setBlocks([...set(0), ...set(1)]);
    expect(ok(a.allocate(req('c5'))).slot).toBe(5);
  });

  test('refuses to drop a set that holds allocations, and changes nothing', () => {
    const a = allocator(2);
    a.reserve({ ...req('c7'), slot: 7 });
    const e = blocksRefused(a, set(0));
    expect(e.conflicts).toEqual([{ containerId: 'c7', slot: 7 }]);
  });

  test('refuses to alter a held set', () => {
    const a = allocator();
    ok(a.allocate(req('c1')));
    const moved = [v4('198.18.0.64/29', '198.18.0.65'), ...set(0).slice(1)];
    blocksRefused(a, moved);
  });

  test('an earlier, empty set that shrinks renumbers the holders after it, addresses unchanged', () => {
    const a = allocator(2);
    a.reserve({ ...req('c7'), slot: 7 });
    const before = a.addressesOf(a.holder('c7') as Holder);
    // set 0's IPv4 block as a /30 (one pod address): set 1 now starts at slot 1
    const change = a.setBlocks([v4('198.18.0.0/30', '198.18.0.1'), ...set(0).slice(1), ...set(1)]);
    expect(change).toEqual({ changed: true, stale: false, sets: 2, renumbered: 1 });
    expect(a.holder('c7')?.slot).toBe(3);
    expect(a.addressesOf(a.holder('c7') as Holder)).toEqual(before);
  });

  test('a shorter list of blocks in use is older news (a node event behind a grow reply): ignored', () => {
    const a = allocator(2);
    ok(a.allocate(req('c0')));
    const before = JSON.stringify(a.toJSON());
    a.growRequested();
    expect(a.setBlocks(set(0))).toEqual({ changed: false, stale: true, sets: 2, renumbered: 0 });
    expect(JSON.stringify(a.toJSON())).toBe(before);
    expect(a.growPending()).toBe(true);
    expect(a.capacity()).toBe(10);
  });

  test('a list with other blocks replaces sets nobody holds an address in', () => {
    const a = allocator(2);
    ok(a.allocate(req('c0')));
    expect(a.setBlocks([...set(0), ...set(3)])).toEqual({
      changed: true,
      stale: false,
      sets: 2,
      renumbered: 0,
    });
    // a node ipam forgot and assigned anew while nothing was held
    const empty = allocator(2);
    expect(empty.setBlocks(set(2))).toEqual({
      changed: true,
      stale: false,
      sets: 1,
      renumbered: 0,
    });
  });

  test('a family added to every set keeps the addresses; holders whose slot number moves are renumbered', () => {
    const a = new NodeAllocator();
    const v6sets = [
      v6('fd00:d1ad::/120', 'fd00:d1ad::1'), // 254 pod addresses
      v6('fd00:d1ad::100/120', 'fd00:d1ad::101'),
    ];
    a.setBlocks(v6sets);
    a.reserve({ ...req('in-set-1'), slot: 300 }); // set 1, offset 48
    const before = a.addressesOf(a.holder('in-set-1') as Holder);
    expect(before.map((x) => x.address)).toEqual(['fd00:d1ad::130']);
    // IPv4 enabled: a /24 (253) joins each set, so set 1 now starts at slot 253, not 254
    const dual = [
      v6sets[0] as NodeBlockValue,
      v4('198.18.0.0/24', '198.18.0.1'),
      v6sets[1] as NodeBlockValue,
      v4('198.18.1.0/24', '198.18.1.1'),
    ];
    expect(a.setBlocks(dual)).toEqual({ changed: true, stale: false, sets: 2, renumbered: 1 });
    const h = a.holder('in-set-1') as Holder;
    expect(h.slot).toBe(299);
    expect(a.addressesOf(h)).toEqual(before);
    expect(a.holderOfSlot(299)?.containerId).toBe('in-set-1');
    expect(a.holderOfSlot(300)).toBeUndefined();
    // the event from before IPv4 was enabled, arriving late: older news
    expect(a.setBlocks(v6sets)).toMatchObject({ changed: false, stale: true });
    // the next pod gets both families
    expect(ok(a.allocate(req('new'))).addresses.map((x) => x.family)).toEqual(['IPv6', 'IPv4']);
  });

  test('a family added is refused when a holder has no slot in the smaller set', () => {
    const a = new NodeAllocator();
    a.setBlocks([v6('fd00:d1ad::/120', 'fd00:d1ad::1')]);
    a.reserve({ ...req('last'), slot: 253 }); // offset 255: the IPv4 /24's broadcast
    blocksRefused(a, [v6('fd00:d1ad::/120', 'fd00:d1ad::1'), v4('198.18.0.0/24', '198.18.0.1')]);
  });

  test('blocks re-paired across sets that would put two single-family holders on one slot: refused', () => {
    const a = allocator(2);
    a.reserve({ ...req('v4only'), slot: 0, families: ['IPv4'] }); // 198.18.0.2
    a.reserve({ ...req('v6only'), slot: 5, families: ['IPv6'] }); // fd00:d1ad::a, set 1
    const [x4, y6] = set(0) as [NodeBlockValue, NodeBlockValue];
    const [w4, z6] = set(1) as [NodeBlockValue, NodeBlockValue];
    const e = blocksRefused(a, [x4, z6, w4, y6]);
    expect(e.conflicts.map((c) => c.containerId).sort()).toEqual(['v4only', 'v6only']);
  });

  test('a holder loses no family: switching one off is refused', () => {
    const a = allocator();
    ok(a.allocate(req('c0')));
    blocksRefused(a, set(0).slice(0, 1));
  });

  test('a malformed list throws NodeBlocksError and changes nothing', () => {
    const a = allocator();
    const before = JSON.stringify(a.toJSON());
    expect(() => a.setBlocks([...set(0), ...set(0)])).toThrow(NodeBlocksError);
    expect(JSON.stringify(a.toJSON())).toBe(before);
  });
});

describe('free, capacity, grow', () => {
  test('needsGrow: below the pre-allocation, once per ask, again after a failed ask', () => {
    const a = allocator();
    expect(a.needsGrow(2)).toBe(false);
    for (let i = 0; i < 4; i++) ok(a.allocate(req(`c${i}`)));
    expect(a.free()).toBe(1);
    expect(a.needsGrow(2)).toBe(true);
    expect(a.growRequested()).toBe(1); // the GrowRequest's `sets`
    expect(a.needsGrow(2)).toBe(false);
    a.growAbandoned();
    expect(a.needsGrow(2)).toBe(true);
    a.growRequested();
    a.setBlocks(set(0)); // the same list again (an older event) does not end the ask
    expect(a.growPending()).toBe(true);
    a.setBlocks([...set(0), ...set(1)]);
    expect(a.growPending()).toBe(false);
    expect(a.free()).toBe(6);
    expect(a.capacity()).toBe(10);
    expect(a.needsGrow(2)).toBe(false);
  });

  test('a node without blocks does not ask: ipam gives the first set by itself', () => {
    expect(allocator(0).needsGrow(10)).toBe(false);
  });
});

describe('toJSON and fromJSON', () => {
  test('restore is exact, through JSON text, and goes on the same way', () => {
    const a = allocator(2);
    for (let i = 0; i < 7; i++) ok(a.allocate(req(`c${i}`, i === 3 ? { families: ['IPv4'] } : {})));
    a.release('c1');
    a.release('c5');
    const b = NodeAllocator.fromJSON(JSON.parse(JSON.stringify(a)) as unknown);
    expect(b.toJSON()).toEqual(a.toJSON());
    expect(b.holders()).toEqual(a.holders());
    const r = ok(b.allocate({ ...req('next'), pod: pod('x', 'u') }));
    expect(r.slot).toBe(7);
    expect(ok(a.allocate({ ...req('next'), pod: pod('x', 'u') })).addresses).toEqual(r.addresses);
  });

  test.each([
    ['not the schema', { v: 1, blocks: [], cursor: -1, holders: [] }, 'cursor'],
    [
      'blocks ipam could not send',
      { v: 1, blocks: [...set(0), ...set(0)], cursor: 0, holders: [] },
      'overlap',
    ],
    [
      'a slot held twice',
      { v: 1, blocks: set(0), cursor: 0, holders: [h('a', 1), h('b', 1)] },
      'slot 1 held twice',
    ],
    [
      'a container twice',
      { v: 1, blocks: set(0), cursor: 0, holders: [h('a', 1), h('a', 2)] },
      'container a twice',
    ],
    [
      'a holder outside the blocks',
      { v: 1, blocks: set(0), cursor: 0, holders: [h('a', 5)] },
      'outside the blocks',
    ],
  ])('refuses %s with a StateError', (_name, value, why) => {
    expect(() => NodeAllocator.fromJSON(value)).toThrow(StateError);
    expect(() => NodeAllocator.fromJSON(value)).toThrow(why);
  });
});

function h(containerId: string, slot: number): unknown {
  return {
    containerId,
    slot,
    pod: { namespace: 'default', name: containerId },
    families: ['IPv4', 'IPv6'],
    allocatedAt: T0.toISOString(),
  };
}

describe('nextFreeSlot', () => {
  test('wraps, starts at 0 when the start is out of range, and probes no more than needed', () => {
    const taken = new Set([3, 4, 0]);
    let probes = 0;
    const isTaken = (s: number): boolean => {
      probes++;
      return taken.has(s);
    };
    expect(nextFreeSlot(isTaken, taken.size, 5, 3)).toBe(1);
    expect(probes).toBe(4);
    expect(nextFreeSlot(isTaken, taken.size, 5, 99)).toBe(1);
    expect(nextFreeSlot(() => true, 5, 5, 0)).toBeUndefined();
    probes = 0;
    expect(nextFreeSlot(isTaken, taken.size, 2 ** 32, 2 ** 32 - 1)).toBe(2 ** 32 - 1);
    expect(probes).toBe(1);
  });
});
