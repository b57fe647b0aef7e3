import { describe, expect, it } from 'vitest';
import { planRecords } from '../src/records.ts';

type V = { readonly op: 'upsert' | 'delete'; readonly n: number };
const stored = (entries: Array<[string, V]>) => new Map(entries.map(([s, v]) => [s, { value: v }]));

describe('records planned against what the stream holds', () => {
  it('publishes what is missing or differs, leaves what is equal, tombstones live leftovers only', () => {
    const plan = planRecords(
      stored([
        ['same', { op: 'upsert', n: 1 }],
        ['changed', { op: 'upsert', n: 1 }],
        ['gone', { op: 'upsert', n: 5 }],
        ['already-deleted', { op: 'delete', n: 6 }],
      ]),
      new Map<string, V>([
        ['same', { op: 'upsert', n: 1 }],
        ['changed', { op: 'upsert', n: 2 }],
        ['new', { op: 'upsert', n: 3 }],
      ]),
      (v) => v.op !== 'delete',
    );
    expect(plan.publish.sort()).toEqual(['changed', 'new']);
    expect(plan.tombstone).toEqual([['gone', { op: 'upsert', n: 5 }]]);
  });
});
