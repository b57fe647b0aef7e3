import { describe, expect, test } from 'vitest';
import { RemoteError } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import { IpamErrorCode } from '@dyad/contracts';
import { NatsAllocator } from '../src/allocator.ts';

/** A bus whose only request answers with `reply` (or throws it). */
function busAnswering(reply: unknown): Bus {
  const stub = {
    isConnected: () => true,
    request: () => (reply instanceof Error ? Promise.reject(reply) : Promise.resolve(reply)),
  };
  return stub as unknown as Bus;
}

const freed = {
  node: 'n1',
  released: [
    {
      namespace: 'default',
      pod: 'p',
      podUid: 'u',
      containerId: 'c',
      addresses: [{ family: 'IPv4', address: '198.18.0.2' }],
    },
  ],
  alreadyReleased: false,
};

describe('NatsAllocator.release tells what IPAM did', () => {
  test.each([
    ['released', freed],
    ['already-released', { node: 'n1', released: [], alreadyReleased: true }],
    ['not-allocated', { node: 'n1', released: [], alreadyReleased: false }],
    [
      'not-allocated',
      new RemoteError('dyad.ipam.v1.release', IpamErrorCode.notAllocated, 'never allocated'),
    ],
  ])('%s', async (want, reply) => {
    const a = new NatsAllocator(() => busAnswering(reply), 1000);
    expect(await a.release('n1', 'c')).toBe(want);
  });
});
