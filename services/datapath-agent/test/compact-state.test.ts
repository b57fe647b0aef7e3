// The agent's cluster-sized state in typed arrays (ByteTable, RouterEntries, FlowDirectory's
// pods) against a plain Map, through seeded random changes: same content after every step, and
// the table's size follows what it holds (it shrinks after mass deletes).
import { describe, expect, it } from 'vitest';
import type { IpcacheInfo } from '@dyad/libbpf-ts';
import { ByteTable } from '../src/datapath/byte-table.ts';
import { RouterEntries } from '../src/datapath/router-entries.ts';
import { FlowDirectory } from '../src/flows/directory.ts';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 0x1_0000_0000;
  };
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('ByteTable', () => {
  it('holds what a Map would through 20,000 random sets and deletes', () => {
    const rand = rng(7);
    const t = new ByteTable(6, 3);
    const m = new Map<string, string>();
    for (let i = 0; i < 20_000; i++) {
      const key = Uint8Array.from({ length: 6 }, () => Math.floor(rand() * 4)); // 4096 keys
      if (rand() < 0.35) {
        expect(t.delete(key)).toBe(m.delete(hex(key)));
      } else {
        const value = Uint8Array.from({ length: 3 }, () => Math.floor(rand() * 256));
        t.set(key, value);
        m.set(hex(key), hex(value));
      }
      if (i % 100 === 0) expect(t.size).toBe(m.size);
    }
    expect(t.size).toBe(m.size);
    for (const [k, v] of m) expect(hex(t.get(Buffer.from(k, 'hex')) ?? new Uint8Array())).toBe(v);
    const seen = new Map([...t.slots()].map((s) => [hex(t.keyAt(s)), hex(t.valueAt(s))]));
    expect(seen).toEqual(m);
  });

  it('shrinks after mass deletes, so its memory follows its content', () => {
    const t = new ByteTable(4, 4);
    const key = (i: number) => new Uint8Array(new Uint32Array([i]).buffer);
    for (let i = 0; i < 100_000; i++) t.set(key(i), key(i));
    const full = t.bytes;
    // 131,072 slots of 9 bytes: more than two thirds used (the table grows at 80 %, to 40 %)
    expect(full).toBeLessThan(100_000 * 9 * 1.5);
    for (let i = 10; i < 100_000; i++) t.delete(key(i));
    expect(t.size).toBe(10);
    expect(t.bytes).toBeLessThan(full / 100);
    for (let i = 0; i < 10; i++) expect(t.get(key(i))).toEqual(key(i));
  });

  it('a key of another length or a short value is refused', () => {
    const t = new ByteTable(4, 4);
    expect(() => t.set(new Uint8Array(4), new Uint8Array(2))).toThrow(RangeError);
  });
});

describe('RouterEntries', () => {
  it('reads back what a Map of the same entries holds, one spelling per prefix', () => {
    const rand = rng(11);
    const r = new RouterEntries();
    const m = new Map<string, IpcacheInfo>();
    const prefixOf = (i: number) =>
      i % 2 === 0 ? `198.18.${(i >> 8) & 255}.${i & 255}/32` : `fd00:0:0:${i.toString(16)}::1/128`;
    const spelled = (i: number) =>
      i % 2 === 0 ? prefixOf(i) : `fd00:0000:0:${i.toString(16)}:0::1/128`;
    for (let step = 0; step < 5_000; step++) {
      const i = Math.floor(rand() * 2000);
      if (rand() < 0.3) {
        expect(r.delete(spelled(i))).toBe(m.delete(prefixOf(i)));
        continue;
      }
      const host = Math.floor(rand() * 5);
      const info: IpcacheInfo = {
        identity: 0x10000 + Math.floor(rand() * 1000),
        nodeId: 0,
        flags: rand() < 0.1 ? 1 : 0,
        ...(host === 0 ? {} : { nodeAddress: i % 2 === 0 ? `198.19.0.${host}` : `fd00::${host}` }),
      };
      r.set(spelled(i), info);
      m.set(prefixOf(i), info);
    }
    expect(r.size).toBe(m.size);
    expect(new Map(r)).toEqual(m);
    for (const [p, v] of m) expect(r.get(p)).toEqual(v);
    expect(r.get('198.18.255.255/32')).toBeUndefined();
  });

  it('keeps a pod CIDR apart from the host prefix at its start', () => {
    const r = new RouterEntries([
      ['198.18.1.0/24', { identity: 2, nodeId: 0, flags: 0 }],
      ['198.18.1.0/32', { identity: 70000, nodeId: 0, flags: 0 }],
    ]);
    expect(r.get('198.18.1.0/24')?.identity).toBe(2);
    expect(r.get('198.18.1.0')?.identity).toBe(70000);
  });
});

describe('FlowDirectory pods', () => {
  it('answers the pod of each address after random changes, as a Map would', () => {
    const rand = rng(3);
    const d = new FlowDirectory();
    const m = new Map<string, { namespace: string; name: string }>();
    const addr = (i: number) => (i % 2 === 0 ? `198.18.0.${i % 256}` : `fd00::${i.toString(16)}`);
    for (let step = 0; step < 5_000; step++) {
      const i = Math.floor(rand() * 500);
      const len = i % 2 === 0 ? 32 : 128;
      if (rand() < 0.3) {
        d.setPod(`${addr(i)}/${len}`, undefined);
        m.delete(addr(i));
      } else {
        const pod = { namespace: `ns-${i % 7}`, name: `pod-${step}` };
        d.setPod(`${addr(i)}/${len}`, pod);
        m.set(addr(i), pod);
      }
    }
    for (let i = 0; i < 500; i++) expect(d.pod(addr(i))).toEqual(m.get(addr(i)));
    expect(d.size.pods).toBe(m.size);
    d.setPod('198.18.0.0/24', { namespace: 'a', name: 'b' }); // a CIDR names no pod
    expect(d.pod('198.18.0.0')).toEqual(m.get('198.18.0.0'));
  });
});
