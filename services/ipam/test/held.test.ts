import { describe, expect, it } from 'vitest';
import { HeldView } from '../src/held.ts';

const b4 = (n: number) => ({
  family: 'IPv4' as const,
  cidr: `198.18.${n}.0/24`,
  gateway: `198.18.${n}.1`,
});

describe("the agents' held-blocks reports", () => {
  it('keeps the newest report per node and answers who holds a block, CIDRs compared canonical', () => {
    const h = new HeldView();
    expect(h.apply('n1', [b4(1)], 10)).toBe(true);
    expect(h.apply('n1', [b4(1), b4(2)], 12)).toBe(true);
    expect(h.apply('n1', [b4(9)], 11)).toBe(false); // older, arrived late
    expect(h.blocks('n1').map((b) => b.cidr)).toEqual(['198.18.1.0/24', '198.18.2.0/24']);
    h.apply('n2', [{ family: 'IPv6', cidr: 'fd00:0:0::100/120', gateway: 'fd00::101' }], 13);
    expect(h.heldBy('n2', 'IPv6', 'fd00::100/120')).toBe(true);
    expect(h.heldBy('n1', 'IPv6', 'fd00::100/120')).toBe(false);
    expect(h.cidrs('IPv4').sort()).toEqual(['198.18.1.0/24', '198.18.2.0/24']);
    h.forget('n1');
    expect(h.blocks('n1')).toEqual([]);
  });

  it('a refresh forgets reports purged from the stream, but not one that arrived while it read', () => {
    const h = new HeldView();
    h.apply('gone', [b4(1)], 1);
    h.apply('kept', [b4(2)], 2);
    const mark = h.mark();
    // While the snapshot is read, a new node reports (the snapshot may miss it).
    h.apply('new', [b4(3)], 5);
    h.refresh(mark, new Map([['kept', { blocks: [b4(2), b4(4)], seq: 4 }]]));
    expect(h.nodes.sort()).toEqual(['kept', 'new']);
    expect(h.blocks('kept')).toHaveLength(2);
  });
});
