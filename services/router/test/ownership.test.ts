import { agentEndpointSubject } from '@dyad/contracts';
import type { EndpointStateValue } from '@dyad/contracts';
import { describe, expect, it } from 'vitest';
import { endpointProblem } from '../src/ownership.ts';

const BLOCKS = ['198.18.1.0/24', 'fd00:18:1::/112'];

function ep(over: Partial<EndpointStateValue> = {}): EndpointStateValue {
  return {
    node: 'node-1.lab',
    containerId: 'ctr',
    ifName: 'eth0',
    endpointId: 1,
    network: 'dyad',
    pod: { namespace: 'lab', name: 'web' },
    ipv4: '198.18.1.10',
    ipv6: 'fd00:18:1::a',
    mac: '0a:00:00:00:00:01',
    hostIfName: 'dyh1',
    hostIfindex: 5,
    hostMac: '0e:00:00:00:00:01',
    identity: 0,
    policy: { ingress: 'disabled', egress: 'disabled' },
    createdAt: '2025-01-01T00:00:00.000Z',
    ...over,
  };
}

const subject = (node = 'node-1.lab', ctr = 'ctr', ifName = 'eth0') =>
  agentEndpointSubject(node, ctr, ifName);

describe('endpointProblem: what a node may say about its pods', () => {
  it('accepts addresses inside the blocks, either family alone, and a subject with a dotted node name', () => {
    expect(endpointProblem(subject(), ep(), BLOCKS, 'upsert')).toBeUndefined();
    expect(endpointProblem(subject(), ep({ ipv6: undefined }), BLOCKS, 'upsert')).toBeUndefined();
    expect(endpointProblem(subject(), ep({ ipv4: undefined }), BLOCKS, 'upsert')).toBeUndefined();
  });

  it("refuses an address of another node's block, of either family, naming the address", () => {
    expect(endpointProblem(subject(), ep({ ipv4: '198.18.2.10' }), BLOCKS, 'upsert')).toEqual({
      reason: 'outside-node-blocks',
      detail: expect.stringContaining('198.18.2.10 is not in a block of node node-1.lab') as string,
    });
    expect(endpointProblem(subject(), ep({ ipv6: 'fd00:18:2::a' }), BLOCKS, 'upsert')?.reason).toBe(
      'outside-node-blocks',
    );
    // The block's edges: the network's first address is inside, the next block's first is not.
    expect(
      endpointProblem(subject(), ep({ ipv4: '198.18.1.255' }), BLOCKS, 'upsert'),
    ).toBeUndefined();
    expect(endpointProblem(subject(), ep({ ipv4: '198.18.2.0' }), BLOCKS, 'upsert')?.reason).toBe(
      'outside-node-blocks',
    );
  });

  it('refuses every address while the node has no blocks', () => {
    expect(endpointProblem(subject(), ep(), [], 'upsert')?.detail).toMatch(/none assigned/);
  });

  it('refuses a record naming another node, container or interface than its subject', () => {
    for (const s of [
      subject('node-2'),
      subject('node-1.lab', 'other'),
      subject('node-1.lab', 'ctr', 'eth1'),
    ]) {
      expect(endpointProblem(s, ep(), BLOCKS, 'upsert')?.reason).toBe('subject-mismatch');
      expect(endpointProblem(s, ep(), BLOCKS, 'delete')?.reason).toBe('subject-mismatch');
    }
    expect(endpointProblem('dyad.agent.v1.endpoint.x', ep(), BLOCKS, 'upsert')?.reason).toBe(
      'subject-mismatch',
    );
  });

  it('lets a delete through whatever addresses it names: it removes what its subject held', () => {
    expect(
      endpointProblem(subject(), ep({ ipv4: '198.18.9.9' }), BLOCKS, 'delete'),
    ).toBeUndefined();
  });
});
