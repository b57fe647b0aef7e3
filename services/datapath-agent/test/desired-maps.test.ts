import type { DirectionPolicyValue } from '@dyad/contracts';
import {
  EndpointFlags,
  IpcacheFlags,
  POLICY_CLASS_BASE,
  PolicyAction,
  Proto,
  portRangePrefixes,
} from '@dyad/libbpf-ts';
import type { PolicyKey } from '@dyad/libbpf-ts';
import { describe, expect, it } from 'vitest';
import {
  classIds,
  desiredMaps,
  directionEntries,
  endpointView,
} from '../src/datapath/desired-maps.ts';
import type { DesiredInputs, PodPolicy } from '../src/datapath/desired-maps.ts';
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

const OPEN: DirectionPolicyValue = { enforce: false, peers: [], cidrs: { IPv4: [], IPv6: [] } };
function enforced(d: Partial<DirectionPolicyValue> = {}): DirectionPolicyValue {
  return { ...OPEN, enforce: true, ...d };
}
function pod(ingress: DirectionPolicyValue, egress: DirectionPolicyValue): PodPolicy {
  return { ingress, egress };
}

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

  it('policy flags follow the v2 policy once synced; a pod without one keeps what it had', () => {
    const policy = { synced: true, policies: new Map([['ns/web', pod(OPEN, enforced())]]) };
    expect(endpointView(ep, { ...unsynced, policy }).flags).toBe(EndpointFlags.ENFORCE_EGRESS);
    // no message (not computed yet, or its newest was refused): unknown, never opened
    const none = { synced: true, policies: new Map<string, PodPolicy>() };
    expect(endpointView(ep, { ...unsynced, policy: none }).flags).toBe(
      EndpointFlags.ENFORCE_INGRESS,
    );
    const d = desiredMaps({ ...unsynced, policy: none });
    expect([d.policy, d.policyCidr, [...d.policyKnown]]).toEqual([[], [], []]);
    expect([...desiredMaps({ ...unsynced, policy }).policyKnown]).toEqual([4]);
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
    const byPrefix = new Map([...d.ipcache].map(([k, v]) => [k.prefix, v]));
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

/** A policy key as text, so expectations read as what the datapath matches. */
function show(k: PolicyKey): string {
  const port = k.proto === 0 ? '' : k.portPrefixLen === 0 ? ' *' : ` ${k.port}/${k.portPrefixLen}`;
  return `${k.direction} id=${k.identity} proto=${k.proto}${port}`;
}

describe('v2 pod policy to map entries', () => {
  it('identity peers: each identity gets each allow; a port range becomes its port prefixes', () => {
    const d = directionEntries(
      4,
      'ingress',
      enforced({
        peers: [
          {
            identities: [70001, 70002],
            allow: [{ protocol: 'TCP', ports: { from: 8000, to: 8080 } }],
          },
          {
            identities: [70003],
            allow: [{ protocol: 'UDP' }, { protocol: 'SCTP', ports: { from: 9, to: 9 } }],
          },
        ],
      }),
    );
    const range = portRangePrefixes(8000, 8080);
    expect(range.length).toBeGreaterThan(1);
    expect(d.policy.map(([k]) => show(k)).sort()).toEqual(
      [
        ...[70001, 70002].flatMap((id) =>
          range.map((r) => `ingress id=${id} proto=${Proto.TCP} ${r.port}/${r.length}`),
        ),
        `ingress id=70003 proto=${Proto.UDP} *`,
        `ingress id=70003 proto=${Proto.SCTP} 9/16`,
      ].sort(),
    );
    expect(d.policy.every(([k, v]) => k.endpointId === 4 && v.action === PolicyAction.ALLOW)).toBe(
      true,
    );
    expect(d.cidr).toEqual([]);
  });

  it('an allow without a protocol is every protocol (ICMP included): one proto-0 entry; identity 0 is any peer', () => {
    const d = directionEntries(
      4,
      'egress',
      enforced({ peers: [{ identities: [0], allow: [{}] }] }),
    );
    expect(d.policy.map(([k]) => show(k))).toEqual(['egress id=0 proto=0']);
  });

  it('a direction not enforced has no entries (its flag is off)', () => {
    const d = directionEntries(4, 'ingress', {
      ...OPEN,
      peers: [{ identities: [70001], allow: [{}] }],
      cidrs: { IPv4: [{ prefix: '198.18.0.0/15', allow: [{}] }], IPv6: [] },
    });
    expect(d).toEqual({ policy: [], cidr: [] });
  });

  it('ipBlocks with except, both families: equal allow-sets share a class, an except gets a class with no entries', () => {
    const web = [{ protocol: 'TCP' as const, ports: { from: 443, to: 443 } }];
    const d = directionEntries(
      4,
      'egress',
      enforced({
        cidrs: {
          IPv4: [
            { prefix: '198.18.0.0/15', allow: web },
            { prefix: '198.18.9.0/24', allow: [] },
          ],
          IPv6: [
            { prefix: 'fd00::/8', allow: web },
            { prefix: 'fd00:9::/32', allow: [] },
          ],
        },
      }),
    );
    const cls = new Map(d.cidr.map(([k, v]) => [k.prefix, v.classId]));
    expect([...cls.keys()]).toEqual(['198.18.0.0/15', '198.18.9.0/24', 'fd00::/8', 'fd00:9::/32']);
    expect(d.cidr.every(([k]) => k.endpointId === 4 && k.direction === 'egress')).toBe(true);
    const webClass = cls.get('198.18.0.0/15') as number;
    const exceptClass = cls.get('198.18.9.0/24') as number;
    expect(cls.get('fd00::/8')).toBe(webClass);
    expect(cls.get('fd00:9::/32')).toBe(exceptClass);
    expect(webClass).not.toBe(exceptClass);
    for (const c of [webClass, exceptClass]) expect(c).toBeGreaterThanOrEqual(POLICY_CLASS_BASE);
    // the class's ports are dy_policy entries with the class as identity; the except has none
    expect(d.policy.map(([k]) => show(k))).toEqual([
      `egress id=${webClass} proto=${Proto.TCP} 443/16`,
    ]);
  });

  it('IPv4-only blocks never open IPv6: no IPv6 entry, so the enforced direction drops all IPv6', () => {
    const d = directionEntries(
      4,
      'ingress',
      enforced({ cidrs: { IPv4: [{ prefix: '0.0.0.0/0', allow: [{}] }], IPv6: [] } }),
    );
    expect(d.cidr.map(([k]) => k.prefix)).toEqual(['0.0.0.0/0']);
    expect(d.policy).toHaveLength(1);
  });

  it('class ids come from the allow-set, not its position: reordering blocks keeps every id', () => {
    const a = [{ protocol: 'TCP' as const }];
    const b = [{ protocol: 'UDP' as const, ports: { from: 53, to: 53 } }];
    const one = directionEntries(
      4,
      'egress',
      enforced({
        cidrs: {
          IPv4: [
            { prefix: '198.18.0.0/16', allow: a },
            { prefix: '198.19.0.0/16', allow: b },
          ],
          IPv6: [],
        },
      }),
    );
    const two = directionEntries(
      4,
      'egress',
      enforced({
        cidrs: {
          IPv4: [
            { prefix: '198.19.0.0/16', allow: b },
            { prefix: '198.18.0.0/16', allow: a },
            { prefix: '198.18.7.0/24', allow: [] },
          ],
          IPv6: [],
        },
      }),
    );
    const ids = (e: typeof one) =>
      Object.fromEntries(e.cidr.map(([k, v]) => [k.prefix, v.classId]));
    expect(ids(two)).toMatchObject(ids(one));
    // an allow-set spelled in another order is the same class
    const spelled = directionEntries(
      4,
      'egress',
      enforced({
        cidrs: {
          IPv4: [
            { prefix: '198.18.0.0/16', allow: [...a, ...b] },
            { prefix: '198.19.0.0/16', allow: [...b, ...a, ...a] },
          ],
          IPv6: [],
        },
      }),
    );
    expect(new Set(spelled.cidr.map(([, v]) => v.classId)).size).toBe(1);
    expect(classIds(['x', 'y', 'x']).size).toBe(2);
  });

  it('the whole map content: entries of every enforced endpoint, none of unknown ones', () => {
    const other: Endpoint = {
      ...ep,
      containerId: 'c2',
      pod: { namespace: 'ns', name: 'db' },
      endpointId: 5,
    };
    const policy = {
      synced: true,
      policies: new Map([
        [
          'ns/web',
          pod(
            enforced({ peers: [{ identities: [70001], allow: [{ protocol: 'TCP' }] }] }),
            enforced({ cidrs: { IPv4: [], IPv6: [{ prefix: 'fd00::/8', allow: [{}] }] } }),
          ),
        ],
      ]),
    };
    const d = desiredMaps({ ...unsynced, endpoints: [ep, other], policy });
    expect(d.policy.map(([k]) => k.endpointId)).toEqual([4, 4]);
    expect(d.policyCidr.map(([k]) => `${k.endpointId} ${k.direction} ${k.prefix}`)).toEqual([
      '4 egress fd00::/8',
    ]);
    expect([...d.policyKnown]).toEqual([4]);
  });
});
