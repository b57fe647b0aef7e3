import { describe, expect, test } from 'vitest';
import { planSweep } from '../src/ipam-sweep.ts';
import type { HeldContainer } from '../src/ipam-sweep.ts';

const held = (...ids: string[]): HeldContainer[] =>
  ids.map((containerId) => ({ containerId, namespace: 'default', pod: `p-${containerId}` }));
const GRACE = 1000;

describe('planSweep', () => {
  test('a container the node has an endpoint for is never released', () => {
    const known = (c: string) => c === 'a';
    const first = planSweep(held('a'), known, new Map(), 0, GRACE);
    const later = planSweep(held('a'), known, first.unknownSince, 10 * GRACE, GRACE);
    expect(later.release).toEqual([]);
    expect(later.unknownSince.size).toBe(0);
  });

  test('an unknown container is released only once seen unknown for the grace period', () => {
    const none = () => false;
    const p1 = planSweep(held('x'), none, new Map(), 5000, GRACE);
    expect(p1.release).toEqual([]);
    expect(p1.unknownSince.get('x')).toBe(5000);
    const p2 = planSweep(held('x'), none, p1.unknownSince, 5000 + GRACE - 1, GRACE);
    expect(p2.release).toEqual([]);
    const p3 = planSweep(held('x'), none, p2.unknownSince, 5000 + GRACE, GRACE);
    expect(p3.release.map((c) => c.containerId)).toEqual(['x']);
  });

  test('the wait starts over when the container became known in between', () => {
    let knownNow = false;
    const known = () => knownNow;
    const p1 = planSweep(held('x'), known, new Map(), 0, GRACE);
    knownNow = true;
    const p2 = planSweep(held('x'), known, p1.unknownSince, GRACE / 2, GRACE);
    knownNow = false;
    const p3 = planSweep(held('x'), known, p2.unknownSince, GRACE, GRACE);
    expect(p3.release).toEqual([]);
    expect(p3.unknownSince.get('x')).toBe(GRACE);
  });

  test('what IPAM no longer holds is forgotten; a candidate stays remembered until it is gone', () => {
    const none = () => false;
    const p1 = planSweep(held('x', 'y'), none, new Map(), 0, GRACE);
    const p2 = planSweep(held('y'), none, p1.unknownSince, GRACE, GRACE);
    expect([...p2.unknownSince.keys()]).toEqual(['y']);
    expect(p2.release.map((c) => c.containerId)).toEqual(['y']);
    // the release failed (IPAM away): the next pass releases it at once, no new wait
    const p3 = planSweep(held('y'), none, p2.unknownSince, GRACE + 1, GRACE);
    expect(p3.release.map((c) => c.containerId)).toEqual(['y']);
  });
});
