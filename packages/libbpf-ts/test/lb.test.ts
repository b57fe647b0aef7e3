import { describe, expect, it } from 'vitest';
import {
  LbConst,
  lbFlowsCodec,
  lbRnatMapCodec,
  lbServicesCodec,
  lbSnatMapCodec,
  maglevTable,
} from '../src/index.ts';

const backends = (n: number) =>
  Array.from({ length: n }, (_, i) => ({ id: i + 1, name: `198.18.1.${i + 1}|8080` }));

describe('maglevTable', () => {
  it('gives every backend M/N slots, within one', () => {
    const t = maglevTable(backends(7));
    expect(t).toHaveLength(LbConst.MAGLEV_M);
    const counts = new Map<number, number>();
    for (const id of t) counts.set(id, (counts.get(id) ?? 0) + 1);
    expect([...counts.keys()].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    for (const c of counts.values())
      expect(Math.abs(c - LbConst.MAGLEV_M / 7)).toBeLessThanOrEqual(1);
  });

  it('does not depend on the order backends are listed in', () => {
    expect(maglevTable([...backends(5)].reverse())).toEqual(maglevTable(backends(5)));
  });

  it('removing one backend of ten moves few slots that were not its own', () => {
    const before = maglevTable(backends(10));
    const after = maglevTable(backends(10).filter((b) => b.id !== 4));
    let moved = 0;
    for (let i = 0; i < before.length; i++) if (before[i] !== 4 && before[i] !== after[i]) moved++;
    // a modulo table would move ~90% of them; Maglev moves a few percent
    expect(moved / before.length).toBeLessThan(0.1);
    expect(after.includes(4)).toBe(false);
  });

  it('is all zero (refuse) without backends', () => {
    expect(maglevTable([]).every((id) => id === 0)).toBe(true);
  });
});

describe('LB codecs round-trip both families', () => {
  it.each([
    ['198.18.96.10', '198.18.1.5'],
    ['fd00:96::a', 'fd00:18:1::5'],
  ])('%s', (vip, client) => {
    const sk = { address: vip, port: 80, protocol: 'UDP' as const };
    const sv = { id: 7, backends: 2, affinityTimeoutS: 30, flags: 1 };
    const b1 = Buffer.alloc(lbServicesCodec.key.size);
    lbServicesCodec.key.encodeInto(sk, b1, 0);
    expect(lbServicesCodec.key.decode(b1, 0)).toEqual(sk);
    const b2 = Buffer.alloc(lbServicesCodec.value.size);
    lbServicesCodec.value.encodeInto(sv, b2, 0);
    expect(lbServicesCodec.value.decode(b2, 0)).toEqual(sv);
    const fk = { src: client, dst: vip, sport: 40000, dport: 80, protocol: 'TCP' as const };
    const b3 = Buffer.alloc(lbFlowsCodec.key.size);
    lbFlowsCodec.key.encodeInto(fk, b3, 0);
    expect(lbFlowsCodec.key.decode(b3, 0)).toEqual(fk);
    const rn = { expiresNs: 5n, address: vip, port: 80, flags: 1 };
    const b4 = Buffer.alloc(lbRnatMapCodec.value.size);
    lbRnatMapCodec.value.encodeInto(rn, b4, 0);
    expect(lbRnatMapCodec.value.decode(b4, 0)).toEqual(rn);
    const sn = { expiresNs: 9n, address: client, port: 40000, frontendPort: 30080, flags: 1 };
    const b5 = Buffer.alloc(lbSnatMapCodec.value.size);
    lbSnatMapCodec.value.encodeInto(sn, b5, 0);
    expect(lbSnatMapCodec.value.decode(b5, 0)).toEqual(sn);
    // network order on the wire, as the datapath compares them with packet bytes
    expect(b5.readUInt16BE(24)).toBe(40000);
    expect(b5.readUInt16BE(26)).toBe(30080);
  });
});
