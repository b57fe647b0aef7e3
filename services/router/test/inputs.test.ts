import { describe, expect, it } from 'vitest';
import { placeholderIdentity } from '../src/identity.ts';
import { endpointInput, nodeAddresses, nodePodCidrs } from '../src/inputs.ts';

const ep = {
  node: 'node-1',
  containerId: 'c1',
  ifName: 'eth0',
  endpointId: 3,
  network: 'dyad',
  pod: { namespace: 'prod', name: 'web-0' },
  ipv4: '198.18.1.5',
  ipv6: 'fd00:18:1::5',
  mac: '0a:00:00:00:00:01',
  hostIfName: 'dyh1',
  hostIfindex: 4,
  hostMac: '0e:00:00:00:00:01',
  identity: 3,
  policy: { ingress: 'disabled' as const, egress: 'disabled' as const },
  createdAt: '2025-01-01T00:00:01.000Z',
};

describe('router inputs', () => {
  it('gives an endpoint its placeholder identity whatever the agent reported (no feedback loop)', () => {
    const want = placeholderIdentity('prod', 'web-0');
    expect(endpointInput(ep).identity).toBe(want);
    expect(endpointInput({ ...ep, identity: want }).identity).toBe(want);
    expect(endpointInput(ep)).toMatchObject({
      node: 'node-1',
      ips: ['198.18.1.5', 'fd00:18:1::5'],
      since: Date.parse('2025-01-01T00:00:01.000Z'),
      pod: { namespace: 'prod', name: 'web-0' },
    });
  });

  it('reads the first InternalIP per family, else ExternalIP, canonical', () => {
    const node = {
      metadata: { uid: 'u', name: 'n', resourceVersion: '1', labels: {} },
      spec: { podCIDRs: [], unschedulable: false },
      status: {
        ready: true,
        addresses: [
          { type: 'Hostname', address: 'n' },
          { type: 'ExternalIP', address: '198.19.9.9' },
          { type: 'InternalIP', address: 'FD00:19:0::1' },
          { type: 'InternalIP', address: 'fd00:19::2' },
        ],
      },
    };
    expect(nodeAddresses(node)).toEqual({ IPv6: 'fd00:19::1', IPv4: '198.19.9.9' });
  });

  it('takes every block of every set of an IPAM assignment, canonical, each once', () => {
    expect(
      nodePodCidrs([
        { family: 'IPv4', cidr: '198.18.1.0/24', gateway: '198.18.1.1' },
        { family: 'IPv6', cidr: 'fd00:18:1:0::/120', gateway: 'fd00:18:1::1' },
        { family: 'IPv4', cidr: '198.18.7.0/24', gateway: '198.18.7.1' },
        { family: 'IPv6', cidr: 'fd00:18:7::/120', gateway: 'fd00:18:7::1' },
        { family: 'IPv4', cidr: '198.18.1.0/24', gateway: '198.18.1.1' },
      ]),
    ).toEqual(['198.18.1.0/24', 'fd00:18:1::/120', '198.18.7.0/24', 'fd00:18:7::/120']);
  });
});
