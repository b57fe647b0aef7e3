import { describe, expect, it } from 'vitest';
import type { V1NetworkPolicy, V1Pod, V1Service } from '@kubernetes/client-node';
import { NetworkPolicy, Pod, Service, k8sObjectSubject } from '@dyad/contracts';
import { normalizeNetworkPolicy, normalizePod, normalizeService } from '../src/normalize.ts';
import { ceSubjectOf } from '../src/stream-port.ts';

describe('normalize', () => {
  const pod: V1Pod = {
    metadata: {
      uid: 'u',
      name: 'web-0',
      namespace: 'prod',
      resourceVersion: '9',
      creationTimestamp: new Date(0),
    },
    spec: { nodeName: 'n1', containers: [{ name: 'c', ports: [{ containerPort: 80 }] }] },
    status: { phase: 'Running', podIPs: [{ ip: 'fd00::5' }, { ip: '198.18.0.5' }] },
  };

  it('keeps both podIPs in the order Kubernetes gave them (primary first)', () => {
    const out = Pod.parse(normalizePod(pod));
    expect(out.status.podIPs).toEqual(['fd00::5', '198.18.0.5']);
  });

  it('turns Date timestamps from list calls into the strings a watch would carry', () => {
    expect(normalizePod(pod).metadata.creationTimestamp).toBe('1970-01-01T00:00:00.000Z');
    const fromWatch = {
      ...pod,
      metadata: { ...pod.metadata, creationTimestamp: '1970-01-01T00:00:00.000Z' },
    };
    expect(normalizePod(fromWatch as unknown as V1Pod)).toEqual(normalizePod(pod));
  });

  it('defaults a container port protocol to TCP', () => {
    expect(Pod.parse(normalizePod(pod)).spec.containers[0]?.ports[0]?.protocol).toBe('TCP');
  });

  it('keeps ipFamilies and ipFamilyPolicy of a dual-stack Service, numeric targetPort as a number', () => {
    const svc = {
      metadata: { uid: 'u', name: 'web', namespace: 'prod', resourceVersion: '3' },
      spec: {
        clusterIP: '198.18.128.10',
        clusterIPs: ['198.18.128.10', 'fd00:d1ad:5e::a'],
        ipFamilies: ['IPv4', 'IPv6'],
        ipFamilyPolicy: 'PreferDualStack',
        ports: [
          { port: 80, targetPort: 8080 },
          { port: 81, targetPort: 'http' },
        ],
      },
    } as unknown as V1Service;
    const out = Service.parse(normalizeService(svc));
    expect(out.spec.ipFamilies).toEqual(['IPv4', 'IPv6']);
    expect(out.spec.ipFamilyPolicy).toBe('PreferDualStack');
    expect(out.spec.ports.map((p) => p.targetPort)).toEqual([8080, 'http']);
  });

  it('keeps sessionAffinity ClientIP with its timeout', () => {
    const svc = {
      metadata: { uid: 'u', name: 'web', namespace: 'prod', resourceVersion: '3' },
      spec: {
        clusterIPs: ['198.18.128.10'],
        sessionAffinity: 'ClientIP',
        sessionAffinityConfig: { clientIP: { timeoutSeconds: 30 } },
        ports: [{ port: 80 }],
      },
    } as unknown as V1Service;
    const out = Service.parse(normalizeService(svc));
    expect(out.spec.sessionAffinity).toBe('ClientIP');
    expect(out.spec.sessionAffinityTimeoutSeconds).toBe(30);
  });

  it('reads `from` both as the client names it (`_from`, list) and as the API sends it (watch)', () => {
    const np: V1NetworkPolicy = {
      metadata: { uid: 'u', name: 'np', namespace: 'prod', resourceVersion: '1' },
      spec: {
        podSelector: {},
        policyTypes: ['Ingress'],
        ingress: [
          {
            _from: [{ ipBlock: { cidr: 'fd00:1::/64', except: [] } }],
            ports: [{ port: 53, protocol: 'UDP' }],
          },
        ],
      },
    };
    const out = NetworkPolicy.parse(normalizeNetworkPolicy(np));
    expect(out.spec.ingress[0]?.from[0]?.ipBlock?.cidr).toBe('fd00:1::/64');
    expect(out.spec.ingress[0]?.ports[0]).toEqual({ protocol: 'UDP', port: 53 });
    const fromWatch = JSON.parse(
      JSON.stringify(np).replace('"_from"', '"from"'),
    ) as V1NetworkPolicy;
    expect(NetworkPolicy.parse(normalizeNetworkPolicy(fromWatch))).toEqual(out);
  });
});

describe('ce-subject', () => {
  it('names the object as every Dyad event does, whatever its NATS subject encodes', () => {
    expect(ceSubjectOf(k8sObjectSubject('Pod', 'shop', 'web-0.a'))).toBe('pod/shop/web-0.a');
    expect(ceSubjectOf(k8sObjectSubject('Node', undefined, 'node-1.lab'))).toBe('node/node-1.lab');
  });
});
