import { FAMILIES } from '@dyad/netaddr';
import type { Family } from '@dyad/netaddr';
import { describe, expect, it } from 'vitest';
import { EndpointSlice, Service } from '@dyad/contracts';
import type { EndpointSliceObject, ServiceObject } from '@dyad/contracts';
import { compileService, sameServiceEntry } from '../src/lb-compile.ts';

const BOTH = new Set(FAMILIES);

function service(spec: Record<string, unknown>): ServiceObject {
  return Service.parse({
    metadata: { uid: 'u1', name: 'web', namespace: 'shop', resourceVersion: '1' },
    spec: {
      selector: { app: 'web' },
      ports: [{ name: 'http', port: 80, targetPort: 'http' }],
      ...spec,
    },
  });
}

function slice(
  name: string,
  addressType: Family,
  endpoints: ReadonlyArray<{
    ip: string;
    node?: string;
    pod?: string;
    ready?: boolean;
    serving?: boolean;
    terminating?: boolean;
  }>,
  ports: ReadonlyArray<{ name?: string; port?: number; protocol?: 'TCP' | 'UDP' }> = [
    { name: 'http', port: 8080, protocol: 'TCP' },
  ],
): EndpointSliceObject {
  return EndpointSlice.parse({
    metadata: { uid: `s-${name}`, name, namespace: 'shop', resourceVersion: '1' },
    addressType,
    serviceName: 'web',
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: {
        ...(e.ready !== undefined ? { ready: e.ready } : {}),
        ...(e.serving !== undefined ? { serving: e.serving } : {}),
        ...(e.terminating !== undefined ? { terminating: e.terminating } : {}),
      },
      ...(e.node ? { nodeName: e.node } : {}),
      ...(e.pod ? { targetRef: { kind: 'Pod', namespace: 'shop', name: e.pod } } : {}),
    })),
    ports,
  });
}

const v4Slice = slice('web-4', 'IPv4', [
  { ip: '198.18.2.5', node: 'b', pod: 'web-0' },
  { ip: '198.18.1.7', node: 'a', pod: 'web-1' },
]);
const v6Slice = slice('web-6', 'IPv6', [
  { ip: 'fd00:18:2:0::5', node: 'b', pod: 'web-0' },
  { ip: 'fd00:18:1::7', node: 'a', pod: 'web-1' },
]);

describe('compileService', () => {
  it('serves every cluster IP with the backends of its own family, in the apiserver order', () => {
    const e = compileService({
      service: service({
        clusterIPs: ['fd00:96::a', '198.18.96.10'],
        ipFamilies: ['IPv6', 'IPv4'],
        ipFamilyPolicy: 'PreferDualStack',
      }),
      slices: [v4Slice, v6Slice],
      families: BOTH,
      node: 'a',
    });
    expect(e.frontends.map((f) => [f.family, f.address, f.port, f.protocol])).toEqual([
      ['IPv6', 'fd00:96::a', 80, 'TCP'],
      ['IPv4', '198.18.96.10', 80, 'TCP'],
    ]);
    expect(e.frontends[0]?.backends.map((b) => b.address)).toEqual([
      'fd00:18:1::7',
      'fd00:18:2::5',
    ]);
    expect(e.frontends[1]?.backends).toEqual([
      {
        address: '198.18.1.7',
        port: 8080,
        state: 'ready',
        nodeName: 'a',
        pod: { namespace: 'shop', name: 'web-1' },
      },
      {
        address: '198.18.2.5',
        port: 8080,
        state: 'ready',
        nodeName: 'b',
        pod: { namespace: 'shop', name: 'web-0' },
      },
    ]);
    expect(e.problems).toEqual([]);
    expect(e.internalTrafficPolicy).toBe('Cluster');
    expect(e.affinityTimeoutSeconds).toBeUndefined();
  });

  it('SingleStack: one frontend of the one family, slices of the other family ignored', () => {
    const e = compileService({
      service: service({ clusterIPs: ['fd00:96::b'], ipFamilies: ['IPv6'] }),
      slices: [v4Slice, v6Slice],
      families: BOTH,
      node: 'a',
    });
    expect(e.frontends).toHaveLength(1);
    expect(e.frontends[0]?.backends.every((b) => b.address.includes(':'))).toBe(true);
  });

  it('a headless Service and an ExternalName one get no frontend', () => {
    for (const spec of [{ clusterIPs: ['None'] }, { type: 'ExternalName', clusterIPs: [] }]) {
      const e = compileService({
        service: service(spec),
        slices: [v4Slice],
        families: BOTH,
        node: 'a',
      });
      expect(e.frontends).toEqual([]);
    }
  });

  it('a cluster IP of a disabled family is reported and not served', () => {
    const e = compileService({
      service: service({ clusterIPs: ['198.18.96.10', 'fd00:96::a'] }),
      slices: [v4Slice, v6Slice],
      families: new Set<Family>(['IPv4']),
      node: 'a',
    });
    expect(e.frontends.map((f) => f.family)).toEqual(['IPv4']);
    expect(e.problems.map((p) => p.code)).toEqual(['family-disabled']);
  });

  it('named targetPort: each slice gives its own number; a slice port without one is reported', () => {
    const other = slice(
      'web-4b',
      'IPv4',
      [{ ip: '198.18.3.9', node: 'c' }],
      [{ name: 'http', port: 9090, protocol: 'TCP' }],
    );
    const unresolved = slice(
      'web-4c',
      'IPv4',
      [{ ip: '198.18.3.10', node: 'c' }],
      [{ name: 'http', protocol: 'TCP' }],
    );
    const e = compileService({
      service: service({ clusterIPs: ['198.18.96.10'] }),
      slices: [v4Slice, other, unresolved],
      families: BOTH,
      node: 'a',
    });
    expect(e.frontends[0]?.backends.map((b) => `${b.address}:${b.port}`)).toEqual([
      '198.18.1.7:8080',
      '198.18.2.5:8080',
      '198.18.3.9:9090',
    ]);
    expect(e.problems.map((p) => p.code)).toEqual(['port-name-unresolved']);
  });

  it('ready backends take connections, terminating ones are kept to finish theirs, not-ready ones are left out', () => {
    const s = slice('web-4', 'IPv4', [
      { ip: '198.18.1.1', ready: true },
      { ip: '198.18.1.2', ready: false, serving: true, terminating: true },
      { ip: '198.18.1.3', ready: false },
      { ip: '198.18.1.4', ready: false, serving: false, terminating: true },
      { ip: '198.18.1.5' },
    ]);
    const e = compileService({
      service: service({ clusterIPs: ['198.18.96.10'] }),
      slices: [s],
      families: BOTH,
      node: 'a',
    });
    expect(e.frontends[0]?.backends.map((b) => [b.address, b.state])).toEqual([
      ['198.18.1.1', 'ready'],
      ['198.18.1.2', 'terminating'],
      ['198.18.1.5', 'ready'],
    ]);
  });

  it('an address of the wrong family in a slice is reported and skipped', () => {
    const bad = slice('web-4', 'IPv4', [{ ip: '198.18.1.1' }, { ip: 'fd00:18:1::1' }]);
    const e = compileService({
      service: service({ clusterIPs: ['198.18.96.10'] }),
      slices: [bad],
      families: BOTH,
      node: 'a',
    });
    expect(e.frontends[0]?.backends.map((b) => b.address)).toEqual(['198.18.1.1']);
    expect(e.problems.map((p) => p.code)).toEqual(['address-family-mismatch']);
  });

  it('internalTrafficPolicy Local keeps only the backends on the node', () => {
    const svc = service({ clusterIPs: ['198.18.96.10'], internalTrafficPolicy: 'Local' });
    const onA = compileService({ service: svc, slices: [v4Slice], families: BOTH, node: 'a' });
    const onC = compileService({ service: svc, slices: [v4Slice], families: BOTH, node: 'c' });
    expect(onA.frontends[0]?.backends.map((b) => b.address)).toEqual(['198.18.1.7']);
    expect(onC.frontends[0]?.backends).toEqual([]);
    expect(onA.internalTrafficPolicy).toBe('Local');
  });

  describe('NodePort', () => {
    const NODE_A = { IPv4: '198.19.7.11', IPv6: 'fd00:19:7::b' } as const;
    const nodePortSvc = (extra: Record<string, unknown> = {}) =>
      service({
        type: 'NodePort',
        clusterIPs: ['198.18.96.10', 'fd00:5e::10'],
        ipFamilies: ['IPv4', 'IPv6'],
        ports: [{ name: 'http', port: 80, targetPort: 'http', nodePort: 30080 }],
        ...extra,
      });
    const nodePorts = (e: ReturnType<typeof compileService>) =>
      e.frontends
        .filter((f) => f.type === 'NodePort')
        .map((f) => ({
          address: f.address,
          port: f.port,
          etp: f.externalTrafficPolicy,
          backends: f.backends.map((b) => b.address),
        }));

    it('a frontend on the node address of each family, with that family’s backends', () => {
      const e = compileService({
        service: nodePortSvc(),
        slices: [v4Slice, v6Slice],
        families: BOTH,
        node: 'a',
        nodeAddresses: NODE_A,
      });
      expect(nodePorts(e)).toEqual([
        {
          address: '198.19.7.11',
          port: 30080,
          etp: 'Cluster',
          backends: ['198.18.1.7', '198.18.2.5'],
        },
        {
          address: 'fd00:19:7::b',
          port: 30080,
          etp: 'Cluster',
          backends: ['fd00:18:1::7', 'fd00:18:2::5'],
        },
      ]);
      // the cluster IPs stay served as before
      expect(e.frontends.filter((f) => f.type === undefined).map((f) => f.address)).toEqual([
        '198.18.96.10',
        'fd00:5e::10',
      ]);
    });

    it('externalTrafficPolicy Local keeps only the node’s backends, on NodePort frontends only', () => {
      const onB = compileService({
        service: nodePortSvc({ externalTrafficPolicy: 'Local' }),
        slices: [v4Slice],
        families: BOTH,
        node: 'b',
        nodeAddresses: NODE_A,
      });
      expect(nodePorts(onB)).toEqual([
        { address: '198.19.7.11', port: 30080, etp: 'Local', backends: ['198.18.2.5'] },
        { address: 'fd00:19:7::b', port: 30080, etp: 'Local', backends: [] },
      ]);
      expect(onB.frontends.find((f) => f.type === undefined)?.backends).toHaveLength(2);
    });

    it('only the families of its cluster IPs, only with a node address, and not for ClusterIP', () => {
      const single = compileService({
        service: nodePortSvc({ clusterIPs: ['fd00:5e::10'], ipFamilies: ['IPv6'] }),
        slices: [v4Slice, v6Slice],
        families: BOTH,
        node: 'a',
        nodeAddresses: NODE_A,
      });
      expect(nodePorts(single).map((f) => f.address)).toEqual(['fd00:19:7::b']);
      const noV6Address = compileService({
        service: nodePortSvc(),
        slices: [],
        families: BOTH,
        node: 'a',
        nodeAddresses: { IPv4: NODE_A.IPv4 },
      });
      expect(nodePorts(noV6Address).map((f) => f.address)).toEqual(['198.19.7.11']);
      const clusterIp = compileService({
        service: nodePortSvc({ type: 'ClusterIP' }),
        slices: [],
        families: BOTH,
        node: 'a',
        nodeAddresses: NODE_A,
      });
      expect(nodePorts(clusterIp)).toEqual([]);
    });
  });

  it('sessionAffinity ClientIP carries its timeout (default 3 h)', () => {
    const dflt = compileService({
      service: service({ clusterIPs: ['198.18.96.10'], sessionAffinity: 'ClientIP' }),
      slices: [],
      families: BOTH,
      node: 'a',
    });
    expect(dflt.affinityTimeoutSeconds).toBe(10_800);
    const set = compileService({
      service: service({
        clusterIPs: ['198.18.96.10'],
        sessionAffinity: 'ClientIP',
        sessionAffinityTimeoutSeconds: 30,
      }),
      slices: [],
      families: BOTH,
      node: 'a',
    });
    expect(set.affinityTimeoutSeconds).toBe(30);
  });

  it('UDP and TCP ports are separate frontends; SCTP is reported', () => {
    const e = compileService({
      service: service({
        clusterIPs: ['198.18.96.10'],
        ports: [
          { name: 'dns', port: 53, protocol: 'UDP' },
          { name: 'dns-tcp', port: 53, protocol: 'TCP' },
          { name: 'sig', port: 99, protocol: 'SCTP' },
        ],
      }),
      slices: [
        slice(
          'dns',
          'IPv4',
          [{ ip: '198.18.1.1' }],
          [
            { name: 'dns', port: 5353, protocol: 'UDP' },
            { name: 'dns-tcp', port: 5353, protocol: 'TCP' },
          ],
        ),
      ],
      families: BOTH,
      node: 'a',
    });
    expect(e.frontends.map((f) => `${f.protocol}/${f.port}->${f.backends[0]?.port}`)).toEqual([
      'UDP/53->5353',
      'TCP/53->5353',
    ]);
    expect(e.problems.map((p) => p.code)).toEqual(['protocol-unsupported']);
  });

  it('no slice: frontends with no backend (the datapath refuses at once)', () => {
    const e = compileService({
      service: service({ clusterIPs: ['198.18.96.10'] }),
      slices: [],
      families: BOTH,
      node: 'a',
    });
    expect(e.frontends[0]?.backends).toEqual([]);
  });

  it('sameServiceEntry ignores key order', () => {
    const e = compileService({
      service: service({ clusterIPs: ['198.18.96.10'] }),
      slices: [v4Slice],
      families: BOTH,
      node: 'a',
    });
    const { problems, ...rest } = e;
    const reordered = JSON.parse(JSON.stringify({ problems, ...rest })) as typeof e;
    expect(sameServiceEntry(e, reordered)).toBe(true);
    expect(sameServiceEntry(e, { ...e, internalTrafficPolicy: 'Local' })).toBe(false);
  });
});
