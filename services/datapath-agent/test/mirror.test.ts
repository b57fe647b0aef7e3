import { endpointsCodec } from '@dyad/libbpf-ts';
import type { EndpointInfo } from '@dyad/libbpf-ts';
import { describe, expect, it } from 'vitest';
import { MirroredMap } from '../src/datapath/mirror.ts';
import { fakeMap } from './helpers/fake-map.ts';

function fakeEndpointsMap() {
  return fakeMap(endpointsCodec);
}

const info = (i: number): EndpointInfo => ({
  ifindex: 2 + (i % 100),
  endpointId: i,
  identity: 3,
  flags: 0,
  mac: '0a:00:00:00:00:01',
  nodeMac: '0e:00:00:00:00:01',
});
const addr = (i: number) => `198.18.${i >> 8}.${i & 255}`;

describe('coalesced map writes', () => {
  it('a burst of 1,000 updates is one batch syscall', async () => {
    const { map, calls } = fakeEndpointsMap();
    const m = new MirroredMap(map);
    await Promise.all(Array.from({ length: 1000 }, (_, i) => m.set({ address: addr(i) }, info(i))));
    expect(calls.updateBatch).toBe(1);
    expect(calls.entriesWritten).toBe(1000);
    expect(m.stats).toMatchObject({ syscalls: 1, written: 1000 });
  });

  it('writeAll: 10,000 entries in chunks of 4,096 (never more pending), one promise, a bad entry rejects it and the rest land', async () => {
    const { map, calls } = fakeEndpointsMap();
    const m = new MirroredMap(map);
    const N = 10_000;
    let queued = 0;
    let maxQueued = 0;
    function* entries(): Generator<readonly [{ address: string }, EndpointInfo | undefined]> {
      for (let i = 0; i < N; i++) {
        // what was queued before this entry and not written yet
        maxQueued = Math.max(maxQueued, queued - calls.entriesWritten);
        queued++;
        yield [{ address: addr(i) }, info(i)];
      }
    }
    await m.writeAll(entries());
    expect(calls.entriesWritten).toBe(N);
    expect(calls.updateBatch).toBe(3); // 4,096 + 4,096 + the rest at the flush
    expect(maxQueued).toBeLessThanOrEqual(4096);
    const bad = { ...info(1), endpointId: -1 };
    await expect(
      m.writeAll([
        [{ address: addr(N) }, info(N)],
        [{ address: addr(N + 1) }, bad],
        [{ address: addr(0) }, undefined],
      ]),
    ).rejects.toThrow();
    expect(m.has({ address: addr(N) })).toBe(true);
    expect(m.has({ address: addr(N + 1) })).toBe(false);
    expect(m.has({ address: addr(0) })).toBe(false);
  });

  it('writes that change nothing reach no syscall; last write per key wins', async () => {
    const { map, calls } = fakeEndpointsMap();
    const m = new MirroredMap(map);
    await m.set({ address: addr(1) }, info(1));
    await m.set({ address: addr(1) }, info(1));
    expect(calls.updateBatch).toBe(1);
    expect(m.stats.unchanged).toBe(1);
    const a = m.set({ address: addr(2) }, info(2));
    const b = m.delete({ address: addr(2) });
    await Promise.all([a, b]);
    expect(m.has({ address: addr(2) })).toBe(false);
    expect(calls.updateBatch).toBe(1); // the set of addr(2) was superseded before the flush
    await m.delete({ address: addr(99) }); // absent: nothing to do
    expect(calls.deleteBatch).toBe(0);
  });

  it('load() learns what the kernel holds, so a restart rewrites nothing healthy', async () => {
    const { map, calls } = fakeEndpointsMap();
    const first = new MirroredMap(map);
    await Promise.all([0, 1, 2].map((i) => first.set({ address: addr(i) }, info(i))));
    const restarted = new MirroredMap(map);
    restarted.load();
    expect(restarted.size).toBe(3);
    await Promise.all([0, 1, 2].map((i) => restarted.set({ address: addr(i) }, info(i))));
    expect(restarted.stats).toMatchObject({ syscalls: 0, written: 0, unchanged: 3 });
    expect(calls.updateBatch).toBe(1);
  });

  it('known in the kernel: the same writes, no copy held, nothing to load after a restart', async () => {
    const { map, calls, store } = fakeEndpointsMap();
    const m = new MirroredMap(map, undefined, { known: 'kernel' });
    await Promise.all([0, 1, 2].map((i) => m.set({ address: addr(i) }, info(i))));
    expect(calls.updateBatch).toBe(1);
    expect(m.size).toBe(3);
    // a successor asks the map: what it holds is not written again, what differs is
    const next = new MirroredMap(map, undefined, { known: 'kernel' });
    next.load();
    await Promise.all([0, 1, 2].map((i) => next.set({ address: addr(i) }, info(i))));
    expect(next.stats).toMatchObject({ syscalls: 0, written: 0, unchanged: 3 });
    await next.set({ address: addr(1) }, info(7));
    expect(next.stats).toMatchObject({ syscalls: 1, written: 1 });
    expect(next.holds({ address: addr(1) }, info(7))).toBe(true);
    await next.delete({ address: addr(2) });
    await next.delete({ address: addr(2) });
    expect(calls.deleteBatch).toBe(1);
    expect(store.size).toBe(2);
    expect([...next.entries()].map(([k]) => k.address).sort()).toEqual([addr(0), addr(1)]);
  });

  it('two spellings of one address are one key', () => {
    const { map } = fakeEndpointsMap();
    const m = new MirroredMap(map);
    expect(m.keyId({ address: 'fd00:d1ad:0::5' })).toBe(m.keyId({ address: 'fd00:d1ad::5' }));
  });
});
