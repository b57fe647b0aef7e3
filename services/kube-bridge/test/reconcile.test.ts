import { describe, expect, it } from 'vitest';
import { planReconcile } from '../src/reconcile.ts';
import type { StreamEntry, Version } from '../src/reconcile.ts';

const v = (uid: string, rv: string): Version => ({ uid, resourceVersion: rv });
const s = (op: 'upsert' | 'delete', uid: string, rv: string): StreamEntry => ({
  op,
  uid,
  resourceVersion: rv,
});

describe('planReconcile', () => {
  it('tombstones an object deleted while kube-bridge was down', () => {
    const plan = planReconcile(new Map([['pod.a', s('upsert', 'u1', '5')]]), new Map());
    expect(plan).toEqual({ upserts: [], tombstones: ['pod.a'] });
  });

  it('does not tombstone twice', () => {
    expect(
      planReconcile(new Map([['pod.a', s('delete', 'u1', '5')]]), new Map()).tombstones,
    ).toEqual([]);
  });

  it('republishes an object whose last publish never reached the stream', () => {
    const plan = planReconcile(
      new Map([['pod.a', s('upsert', 'u1', '5')]]),
      new Map([['pod.a', v('u1', '7')]]),
    );
    expect(plan.upserts).toEqual(['pod.a']);
  });

  it('republishes a recreated object (same name, new uid) even at an equal resourceVersion string', () => {
    const plan = planReconcile(
      new Map([['pod.a', s('upsert', 'u1', '5')]]),
      new Map([['pod.a', v('u2', '5')]]),
    );
    expect(plan.upserts).toEqual(['pod.a']);
  });

  it('revives an object the stream holds a tombstone for', () => {
    const plan = planReconcile(
      new Map([['pod.a', s('delete', 'u1', '5')]]),
      new Map([['pod.a', v('u1', '5')]]),
    );
    expect(plan.upserts).toEqual(['pod.a']);
  });

  it('leaves what is current alone', () => {
    const plan = planReconcile(
      new Map([['pod.a', s('upsert', 'u1', '5')]]),
      new Map([['pod.a', v('u1', '5')]]),
    );
    expect(plan).toEqual({ upserts: [], tombstones: [] });
  });
});
