import { describe, expect, it } from 'vitest';
import type { ApplyContext, NodeRecord, Op, OpResult, RecordIndex } from '../src/record.ts';
import { EMPTY_INDEX, applyOps, indexRecord, orderedAddresses, usage } from '../src/record.ts';

const ctx = (now = 1000, families: ApplyContext['families'] = ['IPv4', 'IPv6']): ApplyContext => ({
  now,
  families,
  releasedTtlMs: 3600_000,
  releasedMax: 1024,
});

/** A node record and its index, threaded through batches as the queue does. */
class Node {
  record: NodeRecord | undefined;
  index: RecordIndex = EMPTY_INDEX;
  writes = 0;
  run(ops: Op[], c = ctx()): OpResult[] {
    const out = applyOps(this.record, this.index, ops, c);
    if (out.changed) this.writes++;
    this.record = out.record;
    this.index = out.index;
    // The index is a cache: rebuilding it from the record must give the same thing.
    expect(indexRecord(out.record)).toEqual(out.index);
    return [...out.results];
  }
  one(op: Op, c = ctx()): OpResult {
    return this.run([op], c)[0] as OpResult;
  }
}

const blocks = (v4 = '198.18.4.0/24', v6 = 'fd00:d1ad::400/120') => ({
  IPv4: { cidr: v4, gateway: v4.replace(/0\/\d+$/, '1') },
  IPv6: { cidr: v6, gateway: v6.replace(/0\/\d+$/, '1') },
});
const alloc = (cid: string, podUid = `uid-${cid}`, families: ('IPv4' | 'IPv6')[] = ['IPv4', 'IPv6']): Op => ({
  kind: 'allocate',
  containerId: cid,
  namespace: 'default',
  pod: `pod-${cid}`,
  podUid,
  families,
});
const ips = (r: OpResult) => (r.kind === 'allocated' ? r.owner.pod.ips : r);

function node(b = blocks()): Node {
  const n = new Node();
  expect(n.one({ kind: 'add-blocks', name: 'n1', uid: 'u1', blocks: b })).toEqual({
    kind: 'blocks',
    added: ['IPv4', 'IPv6'],
  });
  return n;
}

describe('allocation on a node record', () => {
  it('gives one address per family, skipping network/anycast and gateway, in sequence', () => {
    const n = node();
    const rs = n.run([alloc('a'), alloc('b'), alloc('c')]);
    expect(rs.map(ips)).toEqual([
      { IPv4: '198.18.4.2', IPv6: 'fd00:d1ad::402' },
      { IPv4: '198.18.4.3', IPv6: 'fd00:d1ad::403' },
      { IPv4: '198.18.4.4', IPv6: 'fd00:d1ad::404' },
    ]);
    expect(n.writes).toBe(2); // the block write, then one write for the whole batch
  });

  it('a repeated request returns the same pair and writes nothing', () => {
    const n = node();
    const first = n.one(alloc('a'));
    const writes = n.writes;
    const again = n.one(alloc('a'));
    expect(again).toMatchObject({ kind: 'allocated', created: false });
    expect(ips(again)).toEqual(ips(first));
    expect(n.writes).toBe(writes);
  });

  it('a container id held by another pod UID is refused', () => {
    const n = node();
    n.one(alloc('a'));
    expect(n.one(alloc('a', 'other-uid'))).toMatchObject({ kind: 'error', code: 'owner-mismatch' });
  });

  it('searches round robin after the last address, wrapping to the start of the block', () => {
    const n = node(blocks('198.18.0.0/29', 'fd00::/125'));
    // /29: .2 to .6 usable (5); /125: ::2 to ::7 (6)
    n.run(['a', 'b', 'c', 'd', 'e'].map((c) => alloc(c)));
    n.one({ kind: 'release', containerId: 'b' });
    n.one({ kind: 'release', containerId: 'd' });
    // the last handed out was .6: the search wraps and finds .3 (b's) before .5 (d's)
    expect(ips(n.one(alloc('f')))).toEqual({ IPv4: '198.18.0.3', IPv6: 'fd00::7' });
    expect(ips(n.one(alloc('g')))).toEqual({ IPv4: '198.18.0.5', IPv6: 'fd00::3' });
  });

  it('exhaustion names the node and family and leaves the record unchanged', () => {
    const n = node(blocks('198.18.0.4/30', 'fd00::4/126'));
    expect(ips(n.one(alloc('a')))).toEqual({ IPv4: '198.18.0.6', IPv6: 'fd00::6' });
    const before = structuredClone(n.record);
    const writes = n.writes;
    const r = n.one(alloc('b'));
    expect(r).toMatchObject({ kind: 'error', code: 'exhausted', family: 'IPv4', reason: 'node-block' });
    if (r.kind === 'error') expect(r.message).toMatch(/node n1 .*IPv4.*198\.18\.0\.4\/30/);
    expect(n.record).toEqual(before);
    expect(n.writes).toBe(writes);
    // the IPv6 /126 still has one: asking for IPv6 alone works
    expect(ips(n.one(alloc('c', 'uid-c', ['IPv6'])))).toEqual({ IPv6: 'fd00::7' });
  });

  it('within a batch, later ops see earlier ones: no address twice, even with releases between', () => {
    const n = node(blocks('198.18.0.0/28', 'fd00::/124'));
    const ops: Op[] = [];
    for (let i = 0; i < 13; i++) ops.push(alloc(`c${i}`));
    ops.push({ kind: 'release', containerId: 'c3' }, alloc('x'), alloc('y'));
    const rs = n.run(ops);
    expect(rs.at(-1)).toMatchObject({ kind: 'error', code: 'exhausted' });
    const held = Object.values(n.record?.pods ?? {}).map((p) => p.ips.IPv4);
    expect(new Set(held).size).toBe(held.length);
    expect(held).toHaveLength(13);
  });

  it('without a block of a family, the answer says so (the caller claims one)', () => {
    const n = new Node();
    expect(n.one(alloc('a'))).toMatchObject({ kind: 'error', code: 'unknown-node', reason: 'no-record' });
    n.one({ kind: 'add-blocks', name: 'n1', uid: 'u', blocks: { IPv4: blocks().IPv4 } });
    expect(n.one(alloc('a'))).toMatchObject({ kind: 'error', reason: 'no-block', family: 'IPv6' });
    expect(n.record?.pods).toEqual({});
    expect(n.one({ kind: 'add-blocks', name: 'n1', uid: 'u', blocks: blocks() })).toEqual({
      kind: 'blocks',
      added: ['IPv6'],
    });
    expect(n.record?.blocks.IPv4?.cidr).toBe('198.18.4.0/24');
  });

  it('a sandbox that had only IPv4 gets IPv6 added by a later request, keeping its IPv4', () => {
    const n = node();
    const v4 = ips(n.one(alloc('a', 'uid-a', ['IPv4'])));
    expect(v4).toEqual({ IPv4: '198.18.4.2' });
    expect(ips(n.one(alloc('a')))).toEqual({ IPv4: '198.18.4.2', IPv6: 'fd00:d1ad::402' });
  });
});

describe('release on a node record', () => {
  it('by container id, then again: the second is not an error', () => {
    const n = node();
    n.one(alloc('a'));
    const r = n.one({ kind: 'release', containerId: 'a' });
    expect(r).toMatchObject({ kind: 'released', already: false, owners: [{ containerId: 'a' }] });
    expect(n.one({ kind: 'release', containerId: 'a' })).toEqual({ kind: 'released', owners: [], already: true });
    expect(n.record?.pods).toEqual({});
  });

  it('by pod UID releases every sandbox of the pod', () => {
    const n = node();
    n.run([alloc('a', 'p1'), alloc('b', 'p1'), alloc('c', 'p2')]);
    const r = n.one({ kind: 'release', podUid: 'p1' });
    expect(r.kind === 'released' && r.owners.map((o) => o.containerId).sort()).toEqual(['a', 'b']);
    expect(Object.keys(n.record?.pods ?? {})).toEqual(['c']);
    expect(n.one({ kind: 'release', podUid: 'p1' })).toMatchObject({ kind: 'released', already: true });
  });

  it('something never allocated is not-allocated, and nothing is written', () => {
    const n = node();
    n.one(alloc('a'));
    const writes = n.writes;
    expect(n.one({ kind: 'release', containerId: 'zzz' })).toMatchObject({
      kind: 'error',
      code: 'not-allocated',
    });
    expect(n.one({ kind: 'release', containerId: 'a', podUid: 'someone-else' })).toMatchObject({
      code: 'not-allocated',
    });
    expect(n.writes).toBe(writes);
  });

  it('release markers expire, and are capped', () => {
    const n = node();
    n.run([alloc('a'), alloc('b')]);
    n.one({ kind: 'release', containerId: 'a' }, ctx(1000));
    n.one({ kind: 'release', containerId: 'b' }, ctx(1000 + 3600_000));
    expect(Object.keys(n.record?.released ?? {})).toEqual(['b']);
  });

  it('GC releases only the allocation it saw (same pod UID and time)', () => {
    const n = node();
    n.one(alloc('a'), ctx(5000));
    expect(n.one({ kind: 'gc-release', containerId: 'a', podUid: 'uid-a', at: 4000 })).toEqual({ kind: 'skipped' });
    expect(n.one({ kind: 'gc-release', containerId: 'a', podUid: 'x', at: 5000 })).toEqual({ kind: 'skipped' });
    expect(n.one({ kind: 'gc-release', containerId: 'a', podUid: 'uid-a', at: 5000 })).toMatchObject({
      kind: 'released',
    });
  });
});

describe('node record lifecycle', () => {
  it('delete-node removes only the incarnation named', () => {
    const n = node();
    const createdAt = n.record?.createdAt ?? -1;
    expect(n.one({ kind: 'delete-node', createdAt: createdAt + 1 })).toEqual({ kind: 'skipped' });
    expect(n.one({ kind: 'delete-node', createdAt })).toMatchObject({ kind: 'node-deleted' });
    expect(n.record).toBeUndefined();
  });

  it('usage counts used and free pod addresses per family', () => {
    const n = node();
    n.run([alloc('a'), alloc('b')]);
    expect(usage(n.index)).toEqual([
      { family: 'IPv4', used: 2, free: 251 },
      { family: 'IPv6', used: 2, free: 252 },
    ]);
  });

  it('addresses come in the cluster family order', () => {
    const pod = { namespace: 'd', pod: 'p', podUid: 'u', at: 0, ips: { IPv4: '198.18.0.2', IPv6: 'fd00::2' } };
    expect(orderedAddresses(pod, ['IPv6', 'IPv4']).map((a) => a.family)).toEqual(['IPv6', 'IPv4']);
    expect(orderedAddresses(pod, ['IPv4', 'IPv6']).map((a) => a.family)).toEqual(['IPv4', 'IPv6']);
  });
});
