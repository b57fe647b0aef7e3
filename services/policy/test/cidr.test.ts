import { prng } from '@dyad/testbed';
import { describe, expect, it } from 'vitest';
import type { CidrGrant, Prefix } from '../src/cidr.ts';
import { contains, readPrefix, resolveGrants } from '../src/cidr.ts';
import { directionAllows } from '../src/evaluate.ts';
import { PortSet } from '../src/ports.ts';
import type { Protocol } from '../src/ports.ts';

function p(text: string): Prefix {
  const x = readPrefix(text);
  if (x === undefined) throw new Error(text);
  return x;
}

function tcp(...ports: number[]): PortSet {
  const s = new PortSet();
  for (const n of ports) s.addRange('TCP', n, n);
  return s;
}

describe('prefixes', () => {
  it('canonical text, host bits cleared, either family', () => {
    expect(readPrefix('198.18.1.77/24')?.text).toBe('198.18.1.0/24');
    expect(readPrefix('FD00:0018:0::1/48')?.text).toBe('fd00:18::/48');
    expect(readPrefix('198.18.1.7')?.text).toBe('198.18.1.7/32');
    expect(readPrefix('not/8')).toBeUndefined();
  });

  it('containment never crosses families', () => {
    expect(contains(p('198.18.0.0/15'), p('198.19.4.0/24'))).toBe(true);
    expect(contains(p('198.18.0.0/16'), p('198.19.4.0/24'))).toBe(false);
    expect(contains(p('198.18.4.0/24'), p('198.18.0.0/16'))).toBe(false);
    expect(contains(p('0.0.0.0/0'), p('::/0'))).toBe(false);
    expect(contains(p('::/0'), p('fd00::1/128'))).toBe(true);
    expect(contains(p('fd00:18::/33'), p('fd00:18:8000::/34'))).toBe(false);
  });
});

describe('CIDR grants as longest-prefix entries', () => {
  it('nested blocks with different ports, an except inside: each prefix carries what covers it', () => {
    const t = resolveGrants([
      { prefix: p('198.18.0.0/16'), excepts: [], ports: tcp(80) },
      { prefix: p('198.18.1.0/24'), excepts: [p('198.18.1.128/25')], ports: tcp(443) },
    ]);
    expect(t.IPv4).toEqual([
      { prefix: '198.18.0.0/16', allow: [{ protocol: 'TCP', ports: { from: 80, to: 80 } }] },
      {
        prefix: '198.18.1.0/24',
        allow: [
          { protocol: 'TCP', ports: { from: 80, to: 80 } },
          { protocol: 'TCP', ports: { from: 443, to: 443 } },
        ],
      },
      // Excepted from the /24 but still in the /16: port 80 only, not nothing.
      { prefix: '198.18.1.128/25', allow: [{ protocol: 'TCP', ports: { from: 80, to: 80 } }] },
    ]);
  });

  it('an except with nothing around it allows nothing; a prefix adding nothing is left out', () => {
    const t = resolveGrants([
      { prefix: p('fd00:18::/32'), excepts: [p('fd00:18:3::/48')], ports: tcp(80) },
      { prefix: p('fd00:18:1::/48'), excepts: [], ports: tcp(80) },
    ]);
    expect(t).toEqual({
      IPv4: [],
      IPv6: [
        { prefix: 'fd00:18::/32', allow: [{ protocol: 'TCP', ports: { from: 80, to: 80 } }] },
        { prefix: 'fd00:18:3::/48', allow: [] },
      ],
    });
  });

  it('a block inside another block’s except is allowed again', () => {
    const t = resolveGrants([
      { prefix: p('198.18.0.0/15'), excepts: [p('198.18.2.0/24')], ports: tcp(80) },
      { prefix: p('198.18.2.11/32'), excepts: [], ports: tcp(80) },
    ]);
    expect(t.IPv4.map((e) => `${e.prefix} ${e.allow.length}`)).toEqual([
      '198.18.0.0/15 1',
      '198.18.2.0/24 0',
      '198.18.2.11/32 1',
    ]);
  });

  // Every address of a small range checked against a plain reading of the grants: allowed when
  // some grant contains it and none of that grant's excepts does.
  it.each(Array.from({ length: 200 }, (_, i) => 500 + i))(
    'random grants, seed %i: one lookup decides as the grants do',
    (seed) => {
      const r = prng(seed);
      const randomPrefix = (): Prefix => {
        const len = 24 + Math.floor(r() * 9);
        return p(`198.18.7.${Math.floor(r() * 256)}/${len}`);
      };
      const grants: CidrGrant[] = Array.from({ length: 1 + Math.floor(r() * 5) }, () => {
        const prefix = randomPrefix();
        const excepts = Array.from({ length: Math.floor(r() * 3) }, randomPrefix).filter((e) =>
          contains(prefix, e),
        );
        return { prefix, excepts, ports: tcp(80 + Math.floor(r() * 3)) };
      });
      const table = resolveGrants(grants);
      const d = { enforce: true, peers: [], cidrs: table };
      for (let host = 0; host < 256; host++) {
        const address = `198.18.7.${host}`;
        const a = p(address);
        for (const port of [80, 81, 82]) {
          const want = grants.some(
            (g) =>
              contains(g.prefix, a) &&
              !g.excepts.some((e) => contains(e, a)) &&
              g.ports.ranges('TCP').some(([f, t]) => f <= port && port <= t),
          );
          expect(
            directionAllows(d, { identity: 99, address }, 'TCP' satisfies Protocol, port),
            `${address}:${port}`,
          ).toBe(want);
        }
      }
    },
  );
});

describe('port sets', () => {
  it('overlapping and adjacent ranges merge; a whole protocol has no ports; any swallows all', () => {
    const s = new PortSet();
    s.addRange('UDP', 53, 53);
    s.addRange('TCP', 81, 90);
    s.addRange('TCP', 80, 80);
    s.addRange('TCP', 85, 100);
    s.addRange('SCTP', 0, 65535);
    expect(s.toRules()).toEqual([
      { protocol: 'TCP', ports: { from: 80, to: 100 } },
      { protocol: 'UDP', ports: { from: 53, to: 53 } },
      { protocol: 'SCTP' },
    ]);
    const t = new PortSet();
    t.addRange('TCP', 80, 100);
    t.addRange('UDP', 53, 53);
    t.addRange('SCTP', 0, 65535);
    expect(t.key()).toBe(s.key());
    s.addAny();
    expect(s.toRules()).toEqual([{}]);
  });
});
