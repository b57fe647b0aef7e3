import { describe, expect, it } from 'vitest';
import { ReservedIdentity } from '@dyad/contracts';
import { PodIdentities } from '../src/identity.ts';
import { endpointInput, nodeAddresses, nodePodCidrs } from '../src/inputs.ts';

const ep = {
  node: 'node-1',
  containerId: 'c1',
  ifName: 'eth0',
  endpointId: 3,
  network: 'dyad',
  pod: { namespace: 'prod', name: 'web-0', uid: 'uid-web-0' },
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
  const published = (identity: number, uid = 'uid-web-0') => ({
    op: 'upsert' as const,
    namespace: 'prod',
    name: 'web-0',
    uid,
    identity,
  });

  it('gives an endpoint the identity the policy service published for its pod, whatever the agent reported', () => {
    const ids = new PodIdentities();
    // Nothing published yet: unknown, which no policy names.
    expect(endpointInput(ep, ids).identity).toBe(ReservedIdentity.unknown);
    expect(ids.apply(published(70001))).toBe(true);
    expect(endpointInput(ep, ids).identity).toBe(70001);
    // The agent's report feeds back what the router said before: never read (no feedback loop).
    expect(endpointInput({ ...ep, identity: 99999 }, ids).identity).toBe(70001);
    expect(endpointInput(ep, ids)).toMatchObject({
      node: 'node-1',
      ips: ['198.18.1.5', 'fd00:18:1::5'],
      since: Date.parse('2025-01-01T00:00:01.000Z'),
      pod: { namespace: 'prod', name: 'web-0' },
    });
  });

  it('follows the identity as it changes, and forgets it when the pod goes', () => {
    const ids = new PodIdentities();
    ids.apply(published(70001));
    expect(ids.apply(published(70001))).toBe(false);
    expect(ids.apply(published(70002))).toBe(true);
    expect(endpointInput(ep, ids).identity).toBe(70002);
    expect(ids.apply({ op: 'delete', namespace: 'prod', name: 'web-0' })).toBe(true);
    expect(endpointInput(ep, ids).identity).toBe(ReservedIdentity.unknown);
    expect(ids.size).toBe(0);
  });

  it('never gives an endpoint the identity of another pod of the same name (another uid)', () => {
    const ids = new PodIdentities();
    // web-0 re-created: the identity published is the new pod's, the endpoint the old one's.
    ids.apply(published(70003, 'uid-web-0-new'));
    expect(endpointInput(ep, ids).identity).toBe(ReservedIdentity.unknown);
    // An agent that did not report a uid gets the name's identity.
    const noUid = { namespace: ep.pod.namespace, name: ep.pod.name };
    expect(endpointInput({ ...ep, pod: noUid }, ids).identity).toBe(70003);
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
