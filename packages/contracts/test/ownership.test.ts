// nodeClaimProblem: the one check every consumer of node-published records makes (the router's
// endpoint reports, `dyad ipam list`'s allocation records).
import { describe, expect, it } from 'vitest';
import { nodeBlocks, nodeClaimProblem } from '../src/index.ts';

const BLOCKS = ['198.18.1.0/24', 'fd00:1::100/120'];

describe('nodeClaimProblem', () => {
  it('accepts addresses in the subject node’s blocks, of either family', () => {
    expect(nodeClaimProblem('n1', 'n1', ['198.18.1.9', 'fd00:1::109'], BLOCKS)).toBeUndefined();
    expect(nodeClaimProblem('n1', 'n1', [undefined, 'fd00:1::1ff'], BLOCKS)).toBeUndefined();
  });

  it.each<[string, string, readonly (string | undefined)[], readonly string[], RegExp]>([
    [
      'another node’s address',
      'n1',
      ['198.18.2.9'],
      BLOCKS,
      /^198\.18\.2\.9 is not in a block of node n1 \(198\.18\.1\.0\/24, fd00:1::100\/120\)$/,
    ],
    ['one good, one forged', 'n1', ['198.18.1.9', 'fd00:1::209'], BLOCKS, /^fd00:1::209 is not/],
    ['an address while the node has no block', 'n1', ['198.18.1.9'], [], /none assigned/],
    ['text that is no address', 'n1', ['198.18.1.300'], BLOCKS, /^198\.18\.1\.300 is not/],
  ])('refuses %s: outside-node-blocks', (_what, node, addresses, blocks, detail) => {
    const p = nodeClaimProblem(node, node, addresses, blocks);
    expect(p?.reason).toBe('outside-node-blocks');
    expect(p?.detail).toMatch(detail);
  });

  it('refuses a record naming another node than its subject', () => {
    expect(nodeClaimProblem('n2', 'n1', ['198.18.1.9'], BLOCKS)).toEqual({
      reason: 'subject-mismatch',
      detail: 'the subject names node n2, the record n1',
    });
  });
});

describe('nodeBlocks', () => {
  it('maps each node to its blocks; a deleted node has none', () => {
    const m = nodeBlocks([
      {
        op: 'upsert',
        node: 'n1',
        blocks: [{ family: 'IPv4', cidr: '198.18.1.0/24', gateway: '198.18.1.1' }],
      },
      {
        op: 'delete',
        node: 'n2',
        blocks: [{ family: 'IPv4', cidr: '198.18.2.0/24', gateway: '198.18.2.1' }],
      },
    ]);
    expect(Object.fromEntries(m)).toEqual({ n1: ['198.18.1.0/24'], n2: [] });
  });
});
