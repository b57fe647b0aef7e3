import { describe, expect, it } from 'vitest';
import { makePlan, parseUpArgs } from '../src/plan.ts';

function v4InTestNet(addr: string): boolean {
  const [a, b] = addr.split('.').map(Number);
  return a === 198 && (b === 18 || b === 19);
}

describe('lab plan', () => {
  it('uses only 198.18.0.0/15 and fd00::/8, with pools, fabric and services apart', () => {
    for (let i = 0; i < 200; i++) {
      const seed = new Uint8Array(Array.from({ length: 6 }, (_, k) => (i * 37 + k * 101) & 0xff));
      const p = makePlan({ nodes: 16, ipv4: true, ipv6: true }, seed);
      expect(p.prefix).toMatch(/^dl[0-9a-f]{4}$/);
      const v4 = [
        p.fabric.IPv4,
        p.podPools.IPv4?.cidr,
        ...p.serviceRange.split(',').filter((c) => !c.includes(':')),
      ];
      for (const c of v4) expect(v4InTestNet(String(c)), String(c)).toBe(true);
      const v6 = [
        p.fabric.IPv6,
        p.podPools.IPv6?.cidr,
        ...p.serviceRange.split(',').filter((c) => c.includes(':')),
      ];
      for (const c of v6) expect(String(c)).toMatch(/^fd[0-9a-f]{2}:/);
      expect(p.fabric.IPv4?.startsWith('198.19.')).toBe(true);
      expect(Number(p.podPools.IPv4?.cidr.split('.')[2])).toBeLessThan(128);
      expect(Number(p.serviceRange.split(',')[0]?.split('.')[2])).toBeGreaterThanOrEqual(128);
      for (const n of p.nodes) {
        expect(n.netns.startsWith(`${p.prefix}-`)).toBe(true);
        expect(n.fabricPort.length).toBeLessThanOrEqual(15);
        expect(v4InTestNet(n.addresses.IPv4 ?? '')).toBe(true);
        expect(n.addresses.IPv6?.startsWith(p.fabric.IPv6?.replace('::/64', '::') ?? 'x')).toBe(
          true,
        );
      }
      expect(new Set(p.nodes.map((n) => n.addresses.IPv6)).size).toBe(16);
    }
  });

  it('differs per run', () => {
    const a = makePlan({ nodes: 3, ipv4: true, ipv6: true }, Uint8Array.from([1, 2, 3, 4, 5, 6]));
    const b = makePlan({ nodes: 3, ipv4: true, ipv6: true }, Uint8Array.from([9, 8, 7, 6, 5, 4]));
    expect(a.prefix).not.toBe(b.prefix);
    expect(a.fabric.IPv6).not.toBe(b.fabric.IPv6);
    expect(a.fabric.IPv4).not.toBe(b.fabric.IPv4);
  });

  it('single-family labs have only that family everywhere, primary first', () => {
    const v6 = makePlan({ nodes: 2, ipv4: false, ipv6: true }, new Uint8Array(6));
    expect(v6.families).toEqual(['IPv6']);
    expect(v6.serviceRange).not.toContain('.');
    expect(v6.nodes[0]?.addresses.IPv4).toBeUndefined();
    const v4 = makePlan({ nodes: 2, ipv4: true, ipv6: false }, new Uint8Array(6));
    expect(v4.serviceRange).not.toContain(':');
    expect(v4.podPools.IPv6).toBeUndefined();
  });

  it('parses up options as the README spells them and refuses the rest', () => {
    expect(parseUpArgs([])).toEqual({ nodes: 3, ipv4: true, ipv6: true });
    expect(parseUpArgs(['--nodes', '5', '--ipv6=false'])).toEqual({
      nodes: 5,
      ipv4: true,
      ipv6: false,
    });
    expect(parseUpArgs(['--nodes=2', '--ipv4=false'])).toEqual({
      nodes: 2,
      ipv4: false,
      ipv6: true,
    });
    expect(parseUpArgs(['--tracing']).tracing).toBe(true);
    expect(parseUpArgs(['--tracing=false']).tracing).toBeUndefined();
    expect(parseUpArgs(['--kubelet', '--tracing'])).toMatchObject({ kubelet: true, tracing: true });
    expect(() => parseUpArgs(['--ipv4=false', '--ipv6=false'])).toThrow(/at least one/);
    expect(() => parseUpArgs(['--nodes', '0'])).toThrow(/1 to 16/);
    expect(() => parseUpArgs(['--nodes', 'x'])).toThrow(/number/);
    expect(() => parseUpArgs(['--ipv4=no'])).toThrow(/true or false/);
    expect(() => parseUpArgs(['--bogus'])).toThrow(/unknown option/);
  });
});
