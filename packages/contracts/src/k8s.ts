import { Family } from '@dyad/netaddr';
import { z } from 'zod';
import { defineMessage } from './contract.ts';
import { Cidr, FamilySchema, IpAddress, LenientCidr } from './family.ts';
import { K8S_SUBJECT_ROOT } from './subjects.ts';

/**
 * Kubernetes objects as kube-bridge publishes them: normalized to what Dyad's services need, with
 * Kubernetes' own field names so a reader who knows the API knows these. Unknown keys are
 * stripped on decode, so adding an optional field is not a breaking change.
 */

export const K8S_STREAM = 'DYAD_K8S';

const Labels = z.record(z.string(), z.string());

export const ObjectMeta = z.object({
  uid: z.string().min(1),
  name: z.string().min(1),
  namespace: z.string().min(1).optional(),
  resourceVersion: z.string().min(1),
  labels: Labels.default({}),
  creationTimestamp: z.string().optional(),
  deletionTimestamp: z.string().optional(),
});

const Protocol = z.enum(['TCP', 'UDP', 'SCTP']);
const IntOrString = z.union([z.number().int().min(0).max(65535), z.string().min(1)]);

export const LabelSelector = z.object({
  matchLabels: Labels.default({}),
  matchExpressions: z
    .array(
      z.object({
        key: z.string().min(1),
        operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
        values: z.array(z.string()).default([]),
      }),
    )
    .default([]),
});

export const Node = z.object({
  metadata: ObjectMeta,
  spec: z.object({
    podCIDRs: z.array(Cidr).default([]),
    unschedulable: z.boolean().default(false),
  }),
  status: z.object({
    addresses: z.array(z.object({ type: z.string(), address: z.string() })).default([]),
    ready: z.boolean(),
  }),
});

export const Namespace = z.object({
  metadata: ObjectMeta,
  status: z.object({ phase: z.string().optional() }),
});

export const ContainerPort = z.object({
  name: z.string().optional(),
  containerPort: z.number().int().min(1).max(65535),
  protocol: Protocol.default('TCP'),
});

export const Pod = z.object({
  metadata: ObjectMeta,
  spec: z.object({
    nodeName: z.string().optional(),
    hostNetwork: z.boolean().default(false),
    serviceAccountName: z.string().optional(),
    containers: z
      .array(z.object({ name: z.string(), ports: z.array(ContainerPort).default([]) }))
      .default([]),
  }),
  status: z.object({
    phase: z.string().optional(),
    hostIPs: z.array(IpAddress).default([]),
    /** In Kubernetes' order: the primary family first. */
    podIPs: z.array(IpAddress).default([]),
  }),
});

export const Service = z.object({
  metadata: ObjectMeta,
  spec: z.object({
    type: z.enum(['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName']).default('ClusterIP'),
    /** 'None' for headless services, as in Kubernetes. */
    clusterIPs: z.array(z.union([IpAddress, z.literal('None')])).default([]),
    ipFamilies: z.array(FamilySchema).default([]),
    ipFamilyPolicy: z.enum(['SingleStack', 'PreferDualStack', 'RequireDualStack']).optional(),
    selector: Labels.optional(),
    ports: z
      .array(
        z.object({
          name: z.string().optional(),
          protocol: Protocol.default('TCP'),
          port: z.number().int().min(1).max(65535),
          targetPort: IntOrString.optional(),
          nodePort: z.number().int().optional(),
          appProtocol: z.string().optional(),
        }),
      )
      .default([]),
    sessionAffinity: z.string().optional(),
    /** `sessionAffinityConfig.clientIP.timeoutSeconds`. */
    sessionAffinityTimeoutSeconds: z.number().int().min(1).max(86_400).optional(),
    externalTrafficPolicy: z.string().optional(),
    internalTrafficPolicy: z.string().optional(),
    externalIPs: z.array(IpAddress).default([]),
  }),
});

export const EndpointSlice = z.object({
  metadata: ObjectMeta,
  addressType: z.enum([Family.IPv4, Family.IPv6, 'FQDN']),
  /** From the `kubernetes.io/service-name` label. */
  serviceName: z.string().optional(),
  endpoints: z
    .array(
      z.object({
        addresses: z.array(z.string()),
        conditions: z.object({
          ready: z.boolean().optional(),
          serving: z.boolean().optional(),
          terminating: z.boolean().optional(),
        }),
        nodeName: z.string().optional(),
        zone: z.string().optional(),
        targetRef: z
          .object({
            kind: z.string(),
            namespace: z.string().optional(),
            name: z.string(),
            uid: z.string().optional(),
          })
          .optional(),
      }),
    )
    .default([]),
  ports: z
    .array(
      z.object({
        name: z.string().optional(),
        port: z.number().int().optional(),
        protocol: Protocol.optional(),
        appProtocol: z.string().optional(),
      }),
    )
    .default([]),
});

const NetworkPolicyPort = z.object({
  protocol: Protocol.default('TCP'),
  port: IntOrString.optional(),
  endPort: z.number().int().min(1).max(65535).optional(),
});

const NetworkPolicyPeer = z.object({
  podSelector: LabelSelector.optional(),
  namespaceSelector: LabelSelector.optional(),
  ipBlock: z.object({ cidr: LenientCidr, except: z.array(LenientCidr).default([]) }).optional(),
});

export const NetworkPolicy = z.object({
  metadata: ObjectMeta,
  spec: z.object({
    podSelector: LabelSelector,
    policyTypes: z.array(z.enum(['Ingress', 'Egress'])).default([]),
    ingress: z
      .array(
        z.object({
          ports: z.array(NetworkPolicyPort).default([]),
          from: z.array(NetworkPolicyPeer).default([]),
        }),
      )
      .default([]),
    egress: z
      .array(
        z.object({
          ports: z.array(NetworkPolicyPort).default([]),
          to: z.array(NetworkPolicyPeer).default([]),
        }),
      )
      .default([]),
  }),
});

/**
 * The event for one object: its state after a change, or a tombstone carrying the last state
 * seen. The stream keeps only the latest per subject, so a late consumer reads the current world.
 */
function objectEvent<S extends z.ZodType>(object: S) {
  return z.discriminatedUnion('op', [
    z.object({ op: z.literal('upsert'), object }),
    z.object({ op: z.literal('delete'), object }),
  ]);
}

export const K8sKind = {
  Node: 'Node',
  Namespace: 'Namespace',
  Pod: 'Pod',
  Service: 'Service',
  EndpointSlice: 'EndpointSlice',
  NetworkPolicy: 'NetworkPolicy',
} as const;
export type K8sKind = (typeof K8sKind)[keyof typeof K8sKind];

function k8sContract<S extends z.ZodType>(kind: K8sKind, object: S, namespaced: boolean) {
  const lower = kind.toLowerCase();
  return defineMessage({
    type: `io.dyad.k8s.${lower}.v1`,
    version: 1,
    schema: objectEvent(object),
    description: `A ${kind} created, changed or deleted in the Kubernetes API, as kube-bridge saw it.`,
    subjectPattern: `${K8S_SUBJECT_ROOT}.${lower}.${namespaced ? '{namespace}' : '_'}.{name}`,
    stream: K8S_STREAM,
  });
}

export const NodeEvent = k8sContract(K8sKind.Node, Node, false);
export const NamespaceEvent = k8sContract(K8sKind.Namespace, Namespace, false);
export const PodEvent = k8sContract(K8sKind.Pod, Pod, true);
export const ServiceEvent = k8sContract(K8sKind.Service, Service, true);
export const EndpointSliceEvent = k8sContract(K8sKind.EndpointSlice, EndpointSlice, true);
export const NetworkPolicyEvent = k8sContract(K8sKind.NetworkPolicy, NetworkPolicy, true);

export const K8S_EVENT_BY_KIND = {
  Node: NodeEvent,
  Namespace: NamespaceEvent,
  Pod: PodEvent,
  Service: ServiceEvent,
  EndpointSlice: EndpointSliceEvent,
  NetworkPolicy: NetworkPolicyEvent,
} as const;

export type NodeObject = z.output<typeof Node>;
export type NamespaceObject = z.output<typeof Namespace>;
export type PodObject = z.output<typeof Pod>;
export type ServiceObject = z.output<typeof Service>;
export type EndpointSliceObject = z.output<typeof EndpointSlice>;
export type NetworkPolicyObject = z.output<typeof NetworkPolicy>;
export type LabelSelectorObject = z.output<typeof LabelSelector>;
