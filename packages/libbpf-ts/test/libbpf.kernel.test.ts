import { existsSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  ClosedError,
  CodecError,
  DatapathMaps,
  DatapathPrograms,
  decodeDatapathEvent,
  encode,
  EndpointFlags,
  endpointsCodec,
  Libbpf,
  LibbpfError,
  loadDatapath,
  MapType,
  metricsCodec,
  u32Codec,
  mapCodec,
} from '../src/index.ts';
import { DATAPATH_OBJECT, ensureBpfBuilt } from './helpers/build.ts';
import { kernelRequired, kernelSkipReason } from './helpers/kernel.ts';
import { KernelFixture } from './helpers/kernel-fixture.ts';

const skip = kernelSkipReason();
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

const u32Map = mapCodec(u32Codec, u32Codec);

describe.skipIf(skip !== undefined)('libbpf-ts against the kernel', () => {
  const pinRoot = `/sys/fs/bpf/dy${randomBytes(2).toString('hex')}`;
  let lib: Libbpf;

  beforeAll(() => {
    ensureBpfBuilt();
    lib = Libbpf.open();
  });
  afterAll(() => rmSync(pinRoot, { recursive: true, force: true }));

  test('errors carry the operation and the errno name: full map, wrong key size, missing pin', () => {
    using m = lib.createMap(
      { type: MapType.HASH, keySize: 4, valueSize: 4, maxEntries: 2 },
      u32Map,
    );
    m.update(1, 1);
    m.update(2, 2);
    let full: unknown;
    try {
      m.update(3, 3);
    } catch (e) {
      full = e;
    }
    expect(full).toBeInstanceOf(LibbpfError);
    expect(full).toMatchObject({ name: 'LibbpfError', op: 'bpf_map_update_elem', code: 'E2BIG' });

    expect(() => m.updateRaw(Buffer.alloc(3), Buffer.alloc(4))).toThrow(
      expect.objectContaining({ code: 'EINVAL' }),
    );
    expect(() => m.update(1, 1, 'noexist')).toThrow(expect.objectContaining({ code: 'EEXIST' }));
    expect(() => lib.openPinnedMap(`${pinRoot}/nothing-here`)).toThrow(
      expect.objectContaining({ op: 'bpf_obj_get', code: 'ENOENT' }),
    );
  });

  test('object maps are size-checked by libbpf itself', () => {
    using dp = loadDatapath(lib, { pinDir: `${pinRoot}/checked` });
    expect(() => dp.maps.endpoints.updateRaw(Buffer.alloc(19), Buffer.alloc(28))).toThrow(
      expect.objectContaining({ op: 'bpf_map_update_elem', code: 'EINVAL' }),
    );
    // a codec of the wrong width is refused before any syscall
    expect(() =>
      dp.object.map(DatapathMaps.endpoints, mapCodec(u32Codec, endpointsCodec.value)),
    ).toThrow(CodecError);
  });

  test('lookup, update, delete, iterate', () => {
    using m = lib.createMap(
      { type: MapType.HASH, keySize: 4, valueSize: 4, maxEntries: 16 },
      u32Map,
    );
    for (let i = 0; i < 10; i++) m.update(i, i * 10);
    expect(m.lookup(7)).toBe(70);
    expect(m.lookup(70)).toBeUndefined();
    expect(m.delete(7)).toBe(true);
    expect(m.delete(7)).toBe(false);
    expect([...m.keys()].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 8, 9]);
    expect(new Map(m.entries()).get(9)).toBe(90);
  });

  test('batch update, lookup and delete move many entries per call', () => {
    using m = lib.createMap(
      { type: MapType.HASH, keySize: 4, valueSize: 4, maxEntries: 10_000 },
      u32Map,
    );
    const entries = Array.from({ length: 5000 }, (_, i) => [i, i + 1] as const);
    m.updateBatch(entries);
    const got = m.lookupBatch(1024);
    expect(got.length).toBe(5000);
    expect(new Map(got).get(4321)).toBe(4322);
    expect(m.deleteBatch(entries.slice(0, 4000).map(([k]) => k))).toBe(4000);
    expect(m.lookupBatch().length).toBe(1000);
    using small = lib.createMap(
      { type: MapType.HASH, keySize: 4, valueSize: 4, maxEntries: 8 },
      u32Map,
    );
    expect(() => small.updateBatch(entries.slice(0, 10))).toThrow(
      expect.objectContaining({ op: 'bpf_map_update_batch', code: 'E2BIG' }),
    );
  });

  test('async batch updates apply every chunk in order and report failures with errno', async () => {
    using m = lib.createMap(
      { type: MapType.HASH, keySize: 4, valueSize: 4, maxEntries: 3000 },
      u32Map,
    );
    const entries = Array.from({ length: 2500 }, (_, i) => [i, i * 2] as const);
    await m.updateBatchAsync(entries, 300);
    expect(m.lookupBatch().length).toBe(2500);
    expect(m.lookup(2499)).toBe(4998);
    const more = Array.from({ length: 1000 }, (_, i) => [10_000 + i, 1] as const);
    await expect(m.updateBatchAsync(more, 400)).rejects.toMatchObject({
      op: 'bpf_map_update_batch',
      code: 'E2BIG',
    });
  });

  test('per-CPU maps read and write one value per possible CPU', () => {
    using m = lib.createMap(
      { type: MapType.PERCPU_HASH, keySize: 4, valueSize: 16, maxEntries: 4 },
      metricsCodec,
    );
    const n = lib.numPossibleCpus();
    const key = { reason: 1, direction: 2, family: 4 };
    m.updatePerCpu(
      key,
      Array.from({ length: n }, (_, i) => ({ packets: BigInt(i + 1), bytes: 100n })),
    );
    const v = m.lookupPerCpu(key);
    expect(v?.length).toBe(n);
    expect(v?.[n - 1]?.packets).toBe(BigInt(n));
    expect(() => m.lookup(key)).toThrow(CodecError);
  });

  test('maps pinned at load are reused by the next load; closed handles refuse use', () => {
    const dir = `${pinRoot}/reuse`;
    const key = { address: 'fd00:18:9::1' };
    const value = {
      ifindex: 1,
      endpointId: 1,
      identity: 5,
      flags: 0,
      mac: '02:00:00:00:00:01',
      nodeMac: '02:00:00:00:00:02',
    };
    const first = loadDatapath(lib, {
      pinDir: dir,
      maxEntries: { [DatapathMaps.conntrack]: 4096 },
    });
    first.maps.endpoints.update(key, value);
    const eps = first.maps.endpoints;
    first.close();
    expect(() => eps.lookup(key)).toThrow(ClosedError);
    expect(existsSync(`${dir}/${DatapathMaps.endpoints}`)).toBe(true);

    using second = loadDatapath(lib, {
      pinDir: dir,
      maxEntries: { [DatapathMaps.conntrack]: 4096 },
    });
    expect(second.maps.endpoints.lookup(key)).toEqual(value);
    expect(second.object.isPinned(DatapathMaps.endpoints)).toBe(true);
    expect(second.maps.conntrack.map.info.maxEntries).toBe(4096);
  });

  test('an incompatible pinned map makes load fail instead of silently replacing it', () => {
    const dir = `${pinRoot}/clash`;
    using wrong = lib.createMap({
      type: MapType.HASH,
      keySize: 4,
      valueSize: 4,
      maxEntries: 4,
      name: 'dy_endpoints',
    });
    lib.pinFd(wrong.fd, `${dir}/${DatapathMaps.endpoints}`);
    expect(() => loadDatapath(lib, { pinDir: dir })).toThrow(
      expect.objectContaining({ op: 'bpf_object__load' }),
    );
  });

  test('tc attach, query, replace and detach on a veth in a test netns', async () => {
    const lab = new KernelFixture();
    try {
      const node = lab.addNode('n1');
      const pod = lab.addPod(node, 'p1', '198.18.9.11', 'fd00:18:9::11');
      const script = `
        import { Libbpf, loadDatapath } from ${JSON.stringify(new URL('../src/index.ts', import.meta.url).href)};
        const lib = Libbpf.open();
        const dp = loadDatapath(lib, { pinDir: ${JSON.stringify(`${pinRoot}/tc`)}, objectPath: ${JSON.stringify(DATAPATH_OBJECT)} });
        const ref = { ifindex: ${pod.hostIfindex}, direction: 'ingress' };
        const out = {};
        out.before = lib.tc.query({ ...ref, handle: 1, priority: 1 }) ?? null;
        const a = lib.tc.attach(dp.fromContainer.fd, ref);
        out.attached = lib.tc.query(a);
        out.attachId = a.progId;
        try { lib.tc.attach(dp.toContainer.fd, ref); } catch (e) { out.dup = e.code; }
        const r = lib.tc.attach(dp.toContainer.fd, { ...ref, replace: true });
        out.replaced = lib.tc.query(r) !== a.progId && lib.tc.query(r) === r.progId;
        lib.tc.detach(r);
        out.after = lib.tc.query(r) ?? null;
        lib.tc.destroyClsact(ref.ifindex);
        dp.close();
        console.log(JSON.stringify(out));
      `;
      const r = await lab.nsExecAsync(node.netns, [
        process.execPath,
        '--input-type=module',
        '-e',
        script,
      ]);
      expect(r.code, r.stderr).toBe(0);
      const out: unknown = JSON.parse(r.stdout.trim());
      expect(out).toMatchObject({ before: null, dup: 'EEXIST', replaced: true, after: null });
      expect((out as { attached: number; attachId: number }).attached).toBe(
        (out as { attachId: number }).attachId,
      );
    } finally {
      lab.cleanup();
    }
  });

  test('program names and map names come from the object', () => {
    using obj = lib.openObject(DATAPATH_OBJECT);
    expect(obj.programNames().sort()).toEqual(Object.values(DatapathPrograms).sort());
    expect(obj.mapNames()).toEqual(expect.arrayContaining(Object.values(DatapathMaps)));
    expect(() => obj.map(DatapathMaps.endpoints)).toThrow(LibbpfError); // not loaded: no fd
  });

  test('waiting on an empty ring buffer leaves the event loop free', async () => {
    using m = lib.createMap({ type: MapType.RINGBUF, keySize: 0, valueSize: 0, maxEntries: 4096 });
    const reader = lib.ringBuffer(m, (b) => b.length, { pollTimeoutMs: 1000 });
    try {
      // a blocking poll on the JS thread would keep this timer from ever firing first
      const winner = await Promise.race([
        reader.next().then(() => 'event'),
        new Promise((r) => setTimeout(() => r('timer'), 30)),
      ]);
      expect(winner).toBe('timer');
    } finally {
      await reader.close();
    }
  });

  test('the ring buffer reader takes every record in order across the end of the ring, at most `budget` per read', async () => {
    // dy_to_container on a datagram to a pod whose policy admits nothing: one drop event per run
    using dp = loadDatapath(lib, { pinDir: `${pinRoot}/ring` });
    dp.maps.endpoints.update(
      { address: '198.18.0.2' },
      {
        ifindex: 1,
        endpointId: 2,
        identity: 0x10002,
        flags: EndpointFlags.ENFORCE_INGRESS,
        mac: '02:00:00:00:00:02',
        nodeMac: '02:00:00:00:00:01',
      },
    );
    const datagram = (sport: number): Buffer => {
      const b = Buffer.alloc(14 + 20 + 8);
      b.writeUInt16BE(0x0800, 12);
      b[14] = 0x45;
      b.writeUInt16BE(28, 16);
      b[22] = 64;
      b[23] = 17;
      b.set([198, 18, 0, 1], 26);
      b.set([198, 18, 0, 2], 30);
      b.writeUInt16BE(sport, 34);
      b.writeUInt16BE(9999, 36);
      b.writeUInt16BE(8, 38);
      return b;
    };
    const { maxEntries } = lib.mapInfoByFd(dp.maps.events.fd);
    const reader = lib.ringBuffer(dp.maps.events, decodeDatapathEvent, { budget: 100 });
    try {
      // 64-byte events take 72 bytes of ring each: three rounds write past its end twice
      const perRound = Math.floor(maxEntries / 72 / 2);
      const seen: number[] = [];
      for (let round = 0; round < 6; round++) {
        dp.toContainer.testRun(datagram(1000 + round), perRound);
        for (;;) {
          const batch = reader.drainNow();
          expect(batch.length).toBeLessThanOrEqual(100);
          if (batch.length === 0) break;
          for (const e of batch) {
            expect(e).toMatchObject({ type: 'drop', src: '198.18.0.1', dst: '198.18.0.2' });
            expect(e.dport).toBe(9999);
            seen.push(e.sport);
          }
        }
      }
      expect(seen.length).toBe(6 * perRound);
      expect(seen).toEqual(
        Array.from({ length: 6 }, (_, r) => Array<number>(perRound).fill(1000 + r)).flat(),
      );
      expect(6 * perRound * 72).toBeGreaterThan(2 * maxEntries);
    } finally {
      await reader.close();
    }
  });

  test('the ring buffer reader ends its iteration on close and frees promptly', async () => {
    using m = lib.createMap({ type: MapType.RINGBUF, keySize: 0, valueSize: 0, maxEntries: 4096 });
    const reader = lib.ringBuffer(m, (b) => b.length, { pollTimeoutMs: 20 });
    const pending = reader.next();
    await reader.close();
    expect(await pending).toEqual({ value: undefined, done: true });
    expect(encode(u32Codec, 1).length).toBe(4);
  });
});
