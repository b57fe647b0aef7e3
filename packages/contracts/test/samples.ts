import type { MessageContract } from '../src/index.ts';
import {
  AddressesAllocated,
  AddressesExhausted,
  AddressesReleased,
  EndpointReport,
  EndpointSliceEvent,
  GcCompleted,
  GrowReply,
  GrowRequest,
  UninstallReply,
  UninstallRequest,
  IpamNodeEvent,
  NodeBlocksHeld,
  RouterIpcacheEvent,
  RouterRouteEvent,
  RouterServiceEvent,
  RouterSyncEvent,
  NamespaceEvent,
  NetworkPolicyEvent,
  NodeEvent,
  PodEvent,
  ServiceEvent,
  IdentityEvent,
  PodIdentityEvent,
  PodPolicyDesiredV2,
  PolicyStatusEvent,
  FlowEvent,
  ErrorReply,
} from '../src/index.ts';

const meta = (name: string, namespace?: string) => ({
  uid: `uid-${name}`,
  name,
  ...(namespace === undefined ? {} : { namespace }),
  resourceVersion: '42',
  labels: { app: name },
});

const ipamOwner = {
  node: 'node-a',
  namespace: 'prod',
  pod: 'web-0',
  podUid: 'uid-web-0',
  containerId: '3f2a9c',
};
const ipamAddresses = [
  { family: 'IPv4', address: '198.18.1.5' },
  { family: 'IPv6', address: 'fd00:d1ad::5' },
];

/** IPAM requests, replies, records and events, as services/ipam and node agents send them. */
const IPAM_SAMPLES: ReadonlyArray<readonly [MessageContract, unknown]> = [
  [
    IpamNodeEvent,
    {
      op: 'upsert',
      node: 'node-a',
      blocks: [
        { family: 'IPv4', cidr: '198.18.1.0/24', gateway: '198.18.1.1' },
        { family: 'IPv6', cidr: 'fd00:d1ad::/120', gateway: 'fd00:d1ad::1' },
      ],
    },
  ],
  [
    AddressesAllocated,
    { ...ipamOwner, addresses: ipamAddresses, allocatedAt: '2025-01-01T00:00:00.000Z' },
  ],
  [AddressesReleased, { ...ipamOwner, addresses: ipamAddresses, reason: 'pod-deleted' }],
  [AddressesExhausted, { node: 'node-a', family: 'IPv6', scope: 'node-block', message: 'full' }],
  [GrowRequest, { node: 'node-a', sets: 1 }],
  [UninstallRequest, { node: 'node-a' }],
  [
    UninstallReply,
    {
      node: 'node-a',
      removed: ['conflist: removed /host/etc/cni/net.d/05-dyad.conflist', 'pod device dy1a2b'],
      problems: [],
    },
  ],
  [
    GrowReply,
    {
      node: 'node-a',
      blocks: [
        { family: 'IPv4', cidr: '198.18.1.0/24', gateway: '198.18.1.1' },
        { family: 'IPv6', cidr: 'fd00:d1ad::/120', gateway: 'fd00:d1ad::1' },
        { family: 'IPv4', cidr: '198.18.7.0/24', gateway: '198.18.7.1' },
        { family: 'IPv6', cidr: 'fd00:d1ad::700/120', gateway: 'fd00:d1ad::701' },
      ],
    },
  ],
  [
    NodeBlocksHeld,
    {
      node: 'node-a',
      blocks: [{ family: 'IPv4', cidr: '198.18.1.0/24', gateway: '198.18.1.1' }],
      at: '2025-01-01T00:00:00.000Z',
    },
  ],
  [
    GcCompleted,
    {
      releasedNodes: 1,
      releasedOrphanBlocks: 0,
      scannedNodes: 10,
      durationMs: 12.5,
    },
  ],
];

/** Router output for node-a, as services/router publishes it. */
const ROUTER_SAMPLES: ReadonlyArray<readonly [MessageContract, unknown]> = [
  [
    RouterIpcacheEvent,
    {
      op: 'upsert',
      node: 'node-a',
      revision: 7,
      entry: {
        prefix: 'fd00:d1ad::5/128',
        identity: 70001,
        kind: 'pod',
        hostNode: 'node-b',
        hostAddress: 'fd00:19::2',
        local: false,
        pod: { namespace: 'prod', name: 'web-0' },
      },
    },
  ],
  [RouterRouteEvent, { op: 'delete', node: 'node-a', revision: 8, cidr: '198.18.2.0/24' }],
  [
    RouterServiceEvent,
    {
      op: 'upsert',
      node: 'node-a',
      revision: 9,
      service: {
        namespace: 'prod',
        name: 'web',
        frontends: [
          {
            family: 'IPv6',
            address: 'fd00:96::a',
            port: 80,
            protocol: 'TCP',
            portName: 'http',
            backends: [
              {
                address: 'fd00:d1ad::5',
                port: 8080,
                state: 'ready',
                nodeName: 'node-b',
                pod: { namespace: 'prod', name: 'web-0' },
              },
            ],
          },
        ],
        affinityTimeoutSeconds: 10800,
        internalTrafficPolicy: 'Cluster',
        problems: [],
      },
    },
  ],
  [
    RouterServiceEvent,
    { op: 'delete', node: 'node-a', revision: 10, namespace: 'prod', name: 'web' },
  ],
  [
    RouterSyncEvent,
    {
      op: 'upsert',
      node: 'node-a',
      revision: 8,
      ipcacheEntries: 12,
      routes: 2,
      at: '2025-01-01T00:00:00.000Z',
    },
  ],
];

/** What a node agent reports. */
const AGENT_SAMPLES: ReadonlyArray<readonly [MessageContract, unknown]> = [
  [
    EndpointReport,
    {
      op: 'upsert',
      endpoint: {
        node: 'node-a',
        containerId: '3f2a9c',
        ifName: 'eth0',
        endpointId: 7,
        network: 'dyad',
        pod: { namespace: 'prod', name: 'web-0', uid: 'uid-web-0' },
        ipv4: '198.18.1.5',
        ipv6: 'fd00:d1ad::5',
        mac: '0a:11:22:33:44:55',
        hostIfName: 'dy1a2b3c4d5e6f7',
        hostIfindex: 12,
        hostMac: '0e:11:22:33:44:55',
        identity: 65536,
        policy: { ingress: 'enforcing', egress: 'disabled' },
        createdAt: '2025-01-01T00:00:00.000Z',
      },
    },
  ],
];

/** What the policy service publishes. */
const POLICY_SAMPLES: ReadonlyArray<readonly [MessageContract, unknown]> = [
  [
    IdentityEvent,
    {
      op: 'upsert',
      identity: 65538,
      labels: ['dyad:namespace=prod', 'k8s-ns:kubernetes.io/metadata.name=prod', 'k8s:app=web'],
    },
  ],
  [
    PodIdentityEvent,
    {
      op: 'upsert',
      namespace: 'prod',
      name: 'web-0',
      uid: 'uid-web-0',
      identity: 65538,
      node: 'node-a',
    },
  ],
  [
    PolicyStatusEvent,
    {
      op: 'upsert',
      namespace: 'prod',
      name: 'allow-web',
      uid: 'uid-allow-web',
      resourceVersion: '42',
      problems: [
        {
          code: 'datapath-unsupported',
          path: 'spec.ingress[0].ports[1]',
          message: 'SCTP ports are not matched by the datapath yet; that traffic is dropped',
        },
      ],
      accepted: {
        metadata: meta('allow-web', 'prod'),
        spec: {
          podSelector: { matchLabels: { app: 'web' }, matchExpressions: [] },
          policyTypes: ['Ingress'],
          ingress: [{ ports: [{ protocol: 'SCTP', port: 9000 }], from: [] }],
          egress: [],
        },
      },
    },
  ],
  [
    PodPolicyDesiredV2,
    {
      op: 'upsert',
      namespace: 'prod',
      name: 'web-0',
      uid: 'uid-web-0',
      identity: 65538,
      policies: ['allow-web'],
      ingress: {
        enforce: true,
        peers: [
          { identities: [1], allow: [{}] },
          {
            identities: [65537, 65539],
            allow: [
              { protocol: 'TCP', ports: { from: 8080, to: 8080 } },
              { protocol: 'UDP', ports: { from: 5000, to: 5010 } },
            ],
          },
        ],
        cidrs: {
          IPv4: [],
          IPv6: [
            { prefix: 'fd00:beef::/64', allow: [{ protocol: 'TCP' }] },
            { prefix: 'fd00:beef::/80', allow: [] },
          ],
        },
      },
      egress: {
        enforce: false,
        peers: [],
        cidrs: { IPv4: [], IPv6: [] },
      },
    },
  ],
];

/** A policy drop of a TCP SYN between two pods, as an agent publishes it. */
export const FLOW_SAMPLE = {
  time: '2026-12-06T04:40:00.123Z',
  node_name: 'node-a',
  verdict: 'DROPPED',
  drop_reason: 10,
  drop_reason_desc: 'POLICY_DENIED',
  policy_verdict: 'DENIED',
  traffic_direction: 'INGRESS',
  IP: { source: 'fd00:d1ad::5', destination: 'fd00:d1ad::6', ipVersion: 'IPv6' },
  l4: { TCP: { source_port: 40000, destination_port: 8080, flags: { SYN: true } } },
  source: {
    identity: 0x10001,
    namespace: 'prod',
    pod_name: 'web-0',
    labels: ['dyad:namespace=prod', 'k8s:app=web'],
  },
  destination: {
    identity: 0x10002,
    namespace: 'prod',
    pod_name: 'db-0',
    labels: ['dyad:namespace=prod', 'k8s:app=db'],
  },
  interface: { index: 7, name: 'dy1a2b3c' },
  is_reply: false,
  event_type: { type: 1 },
  Type: 'L3_L4',
} as const;

/** One valid payload per contract, as kube-bridge would publish it. */
export const VALID_SAMPLES: ReadonlyArray<readonly [MessageContract, unknown]> = [
  [
    NodeEvent,
    {
      op: 'upsert',
      object: {
        metadata: meta('node-a'),
        spec: { podCIDRs: ['198.18.1.0/24', 'fd00:d1ad::/120'], unschedulable: false },
        status: { addresses: [{ type: 'InternalIP', address: '198.19.0.1' }], ready: true },
      },
    },
  ],
  [
    NamespaceEvent,
    { op: 'delete', object: { metadata: meta('prod'), status: { phase: 'Active' } } },
  ],
  [
    PodEvent,
    {
      op: 'upsert',
      object: {
        metadata: meta('web-0', 'prod'),
        spec: {
          nodeName: 'node-a',
          hostNetwork: false,
          containers: [
            { name: 'web', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] },
          ],
        },
        status: {
          phase: 'Running',
          hostIPs: ['198.19.0.1'],
          podIPs: ['fd00:d1ad::5', '198.18.1.5'],
        },
      },
    },
  ],
  [
    ServiceEvent,
    {
      op: 'upsert',
      object: {
        metadata: meta('web', 'prod'),
        spec: {
          type: 'ClusterIP',
          clusterIPs: ['198.18.128.10', 'fd00:d1ad:5e::a'],
          ipFamilies: ['IPv4', 'IPv6'],
          ipFamilyPolicy: 'RequireDualStack',
          selector: { app: 'web' },
          ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 'http' }],
          externalIPs: [],
        },
      },
    },
  ],
  [
    EndpointSliceEvent,
    {
      op: 'upsert',
      object: {
        metadata: meta('web-abcde', 'prod'),
        addressType: 'IPv6',
        serviceName: 'web',
        endpoints: [
          {
            addresses: ['fd00:d1ad::5'],
            conditions: { ready: true, serving: true, terminating: false },
            nodeName: 'node-a',
            targetRef: { kind: 'Pod', namespace: 'prod', name: 'web-0', uid: 'uid-web-0' },
          },
        ],
        ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      },
    },
  ],
  [
    NetworkPolicyEvent,
    {
      op: 'upsert',
      object: {
        metadata: meta('allow-web', 'prod'),
        spec: {
          podSelector: { matchLabels: { app: 'web' }, matchExpressions: [] },
          policyTypes: ['Ingress', 'Egress'],
          ingress: [
            {
              ports: [
                { protocol: 'TCP', port: 8080 },
                { protocol: 'UDP', port: 5000, endPort: 5010 },
              ],
              from: [
                { namespaceSelector: { matchLabels: { team: 'a' }, matchExpressions: [] } },
                { ipBlock: { cidr: 'fd00:beef::/64', except: ['fd00:beef::/80'] } },
              ],
            },
          ],
          egress: [{ ports: [], to: [{ ipBlock: { cidr: '198.18.0.0/15', except: [] } }] }],
        },
      },
    },
  ],
  ...IPAM_SAMPLES,
  ...ROUTER_SAMPLES,
  ...AGENT_SAMPLES,
  ...POLICY_SAMPLES,
  [FlowEvent, FLOW_SAMPLE],
  [ErrorReply, { error: { code: 'bad-request', message: 'schema: node: required' } }],
];
