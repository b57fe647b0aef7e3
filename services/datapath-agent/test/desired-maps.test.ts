import { EndpointFlags, IpcacheFlags } from '@dyad/libbpf-ts';
import { describe, expect, it } from 'vitest';
import { desiredMaps, endpointView } from '../src/datapath/desired-maps.ts';
import type { DesiredInputs } from '../src/datapath/desired-maps.ts';
import type { Endpoint } from '../src/endpoint.ts';

const ep: Endpoint = {
  containerId: 'c1',
  ifName: 'eth0',
  network: 'dyad',
  netns: '/run/netns/p1',
  pod: { namespace: 'ns', name: 'web' },
  endpointId: 4,
  ipv4: { address: '198.18.0.10', cidr: '198.18.0.0/24', gateway: '198.18.0.1' },
  ipv6: { address: 'fd00:d1ad::a', cidr: 'fd00:d1ad::/120', gateway: 'fd00:d1ad::1' },
  mac: '0a:00:00:00:00:01',
  hostIfName: 'dy1',
  hostIfindex: 12,
  hostMac: '0e:00:00:00:00:01',
  mtu: 1500,
  identity: 77,
  flags: EndpointFlags.ENFORCE_INGRESS,
  createdAt: '2026-01-01T00:00:00.000Z',
};

const unsynced: DesiredInputs = {
  endpoints: [ep],
  router: { synced: false, entries: new Map() },
  policy: { synced: false, policies: new Map() },
  nodeId: 2,
  initIdentity: 3,
};

describe('desired map contents', () => {
  it('before the first router and policy snapshots an endpoint keeps what it had (a restart does not guess)', () => {
    expect(endpointView(ep, unsynced)).toEqual({
      identity: 77,
      flags: EndpointFlags.ENFORCE_INGRESS,
    });
    const d = desiredMaps(unsynced);
    expect(d.ipcacheComplete).toBe(false);
    expect(d.policy).toEqual([]);
  });

  it('the router names the identity by the pod address; without an entry the init identity', () => {
    const withEntry = {
      ...unsynced,
      router: {
        synced: true,
        entries: new Map([['fd00:d1ad::a/128', { identity: 500, nodeId: 0, flags: 0 }]]),
      },
    };
    expect(endpointView(ep, withEntry).identity).toBe(500);
    expect(
      endpointView(ep, { ...unsynced, router: { synced: true, entries: new Map() } }).identity,
    ).toBe(3);
  });

  it('policy flags follow the pod policy once synced; no policy means none enforced', () => {
    const policy = {
      synced: true,
      policies: new Map([['ns/web', { enforceIngress: false, enforceEgress: true, rules: [] }]]),
    };
    expect(endpointView(ep, { ...unsynced, policy }).flags).toBe(EndpointFlags.ENFORCE_EGRESS);
    expect(
      endpointView(ep, { ...unsynced, policy: { synced: true, policies: new Map() } }).flags,
    ).toBe(0);
  });

  it("a local endpoint's ipcache entry wins over the router's for its own address, in both families", () => {
    const router = {
      synced: true,
      entries: new Map([
        ['198.18.0.10/32', { identity: 500, nodeId: 9, flags: 0 }],
        ['198.18.1.0/24', { identity: 6, nodeId: 9, flags: 0 }],
      ]),
    };
    const d = desiredMaps({ ...unsynced, router });
    const byPrefix = new Map(d.ipcache.map(([k, v]) => [k.prefix, v]));
    expect(byPrefix.get('198.18.0.10/32')).toEqual({
      identity: 500,
      nodeId: 2,
      flags: IpcacheFlags.LOCAL_NODE,
    });
    expect(byPrefix.get('fd00:d1ad::a/128')?.flags).toBe(IpcacheFlags.LOCAL_NODE);
    expect(byPrefix.get('198.18.1.0/24')).toEqual({ identity: 6, nodeId: 9, flags: 0 });
    expect(d.endpoints.map(([k]) => k.address)).toEqual(['198.18.0.10', 'fd00:d1ad::a']);
  });
});
