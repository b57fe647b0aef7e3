import type {
  V1EndpointSlice,
  V1LabelSelector,
  V1Namespace,
  V1NetworkPolicy,
  V1NetworkPolicyPeer,
  V1NetworkPolicyPort,
  V1Node,
  V1ObjectMeta,
  V1Pod,
  V1Service,
} from '@kubernetes/client-node';
import type { z } from 'zod';
import type {
  EndpointSlice,
  LabelSelector,
  Namespace,
  NetworkPolicy,
  Node,
  ObjectMeta,
  Pod,
  Service,
} from '@dyad/contracts';

/**
 * Kubernetes API objects → Dyad's normalized objects. Pure. Objects from a list call carry Date
 * instances where objects from a watch carry strings, so timestamps go through `timestamp()`.
 * Validation happens later, in the contract's encoder: these functions only pick and rename.
 */

type In<S extends z.ZodType> = z.input<S>;

export function timestamp(v: Date | string | undefined | null): string | undefined {
  if (v === undefined || v === null) return undefined;
  return v instanceof Date ? v.toISOString() : v;
}

export function normalizeMeta(m: V1ObjectMeta | undefined): In<typeof ObjectMeta> {
  const meta = m ?? {};
  const out: In<typeof ObjectMeta> = {
    uid: meta.uid ?? '',
    name: meta.name ?? '',
    resourceVersion: meta.resourceVersion ?? '',
    labels: { ...(meta.labels ?? {}) },
  };
  if (meta.namespace) out.namespace = meta.namespace;
  const created = timestamp(meta.creationTimestamp);
  if (created !== undefined) out.creationTimestamp = created;
  const deleting = timestamp(meta.deletionTimestamp);
  if (deleting !== undefined) out.deletionTimestamp = deleting;
  return out;
}

export function normalizeNode(n: V1Node): In<typeof Node> {
  const ready = (n.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
  return {
    metadata: normalizeMeta(n.metadata),
    spec: {
      podCIDRs: [...(n.spec?.podCIDRs ?? [])],
      unschedulable: n.spec?.unschedulable ?? false,
    },
    status: {
      addresses: (n.status?.addresses ?? []).map((a) => ({ type: a.type, address: a.address })),
      ready,
    },
  };
}

export function normalizeNamespace(ns: V1Namespace): In<typeof Namespace> {
  return {
    metadata: normalizeMeta(ns.metadata),
    status: { ...(ns.status?.phase ? { phase: ns.status.phase } : {}) },
  };
}

export function normalizePod(p: V1Pod): In<typeof Pod> {
  const spec = p.spec;
  return {
    metadata: normalizeMeta(p.metadata),
    spec: {
      ...(spec?.nodeName ? { nodeName: spec.nodeName } : {}),
      hostNetwork: spec?.hostNetwork ?? false,
      ...(spec?.serviceAccountName ? { serviceAccountName: spec.serviceAccountName } : {}),
      containers: (spec?.containers ?? []).map((c) => ({
        name: c.name,
        ports: (c.ports ?? []).map((port) => ({
          ...(port.name ? { name: port.name } : {}),
          containerPort: port.containerPort,
          protocol: protocolOf(port.protocol),
        })),
      })),
    },
    status: {
      ...(p.status?.phase ? { phase: p.status.phase } : {}),
      hostIPs: (p.status?.hostIPs ?? []).map((h) => h.ip).filter(isString),
      // Kubernetes orders podIPs primary family first; the order is meaning, keep it.
      podIPs: (p.status?.podIPs ?? []).map((ip) => ip.ip).filter(isString),
    },
  };
}

export function normalizeService(s: V1Service): In<typeof Service> {
  const spec = s.spec;
  return {
    metadata: normalizeMeta(s.metadata),
    spec: {
      type: (spec?.type ?? 'ClusterIP') as In<typeof Service>['spec']['type'],
      clusterIPs: [...(spec?.clusterIPs ?? (spec?.clusterIP ? [spec.clusterIP] : []))],
      ipFamilies: [...(spec?.ipFamilies ?? [])] as In<typeof Service>['spec']['ipFamilies'],
      ...(spec?.ipFamilyPolicy
        ? {
            ipFamilyPolicy: spec.ipFamilyPolicy as NonNullable<
              In<typeof Service>['spec']['ipFamilyPolicy']
            >,
          }
        : {}),
      ...(spec?.selector ? { selector: { ...spec.selector } } : {}),
      ports: (spec?.ports ?? []).map((p) => ({
        ...(p.name ? { name: p.name } : {}),
        protocol: protocolOf(p.protocol),
        port: p.port,
        ...(p.targetPort !== undefined ? { targetPort: intOrString(p.targetPort) } : {}),
        ...(p.nodePort !== undefined ? { nodePort: p.nodePort } : {}),
        ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}),
      })),
      ...(spec?.sessionAffinity ? { sessionAffinity: spec.sessionAffinity } : {}),
      ...(spec?.sessionAffinityConfig?.clientIP?.timeoutSeconds !== undefined
        ? { sessionAffinityTimeoutSeconds: spec.sessionAffinityConfig.clientIP.timeoutSeconds }
        : {}),
      ...(spec?.externalTrafficPolicy ? { externalTrafficPolicy: spec.externalTrafficPolicy } : {}),
      ...(spec?.internalTrafficPolicy ? { internalTrafficPolicy: spec.internalTrafficPolicy } : {}),
      externalIPs: [...(spec?.externalIPs ?? [])],
    },
  };
}

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export function normalizeEndpointSlice(e: V1EndpointSlice): In<typeof EndpointSlice> {
  const serviceName = e.metadata?.labels?.[SERVICE_NAME_LABEL];
  return {
    metadata: normalizeMeta(e.metadata),
    addressType: e.addressType as In<typeof EndpointSlice>['addressType'],
    ...(serviceName ? { serviceName } : {}),
    endpoints: (e.endpoints ?? []).map((ep) => ({
      addresses: [...ep.addresses],
      conditions: {
        ...(ep.conditions?.ready !== undefined ? { ready: ep.conditions.ready } : {}),
        ...(ep.conditions?.serving !== undefined ? { serving: ep.conditions.serving } : {}),
        ...(ep.conditions?.terminating !== undefined
          ? { terminating: ep.conditions.terminating }
          : {}),
      },
      ...(ep.nodeName ? { nodeName: ep.nodeName } : {}),
      ...(ep.zone ? { zone: ep.zone } : {}),
      ...(ep.targetRef?.name
        ? {
            targetRef: {
              kind: ep.targetRef.kind ?? '',
              name: ep.targetRef.name,
              ...(ep.targetRef.namespace ? { namespace: ep.targetRef.namespace } : {}),
              ...(ep.targetRef.uid ? { uid: ep.targetRef.uid } : {}),
            },
          }
        : {}),
    })),
    ports: (e.ports ?? []).map((p) => ({
      ...(p.name ? { name: p.name } : {}),
      ...(p.port !== undefined ? { port: p.port } : {}),
      ...(p.protocol ? { protocol: protocolOf(p.protocol) } : {}),
      ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}),
    })),
  };
}

export function normalizeNetworkPolicy(np: V1NetworkPolicy): In<typeof NetworkPolicy> {
  const spec = np.spec;
  return {
    metadata: normalizeMeta(np.metadata),
    spec: {
      podSelector: selector(spec?.podSelector),
      policyTypes: [...(spec?.policyTypes ?? [])] as In<
        typeof NetworkPolicy
      >['spec']['policyTypes'],
      // The generated client names the field `_from` in listed objects; watch events carry the
      // API's own JSON, where it is `from`.
      ingress: (spec?.ingress ?? []).map((r) => ({
        ports: (r.ports ?? []).map(policyPort),
        from: (r._from ?? (r as { from?: V1NetworkPolicyPeer[] }).from ?? []).map(peer),
      })),
      egress: (spec?.egress ?? []).map((r) => ({
        ports: (r.ports ?? []).map(policyPort),
        to: (r.to ?? []).map(peer),
      })),
    },
  };
}

function selector(s: V1LabelSelector | undefined): In<typeof LabelSelector> {
  return {
    matchLabels: { ...(s?.matchLabels ?? {}) },
    matchExpressions: (s?.matchExpressions ?? []).map((e) => ({
      key: e.key,
      operator: e.operator as 'In' | 'NotIn' | 'Exists' | 'DoesNotExist',
      values: [...(e.values ?? [])],
    })),
  };
}

function peer(p: V1NetworkPolicyPeer) {
  return {
    ...(p.podSelector ? { podSelector: selector(p.podSelector) } : {}),
    ...(p.namespaceSelector ? { namespaceSelector: selector(p.namespaceSelector) } : {}),
    ...(p.ipBlock
      ? { ipBlock: { cidr: p.ipBlock.cidr, except: [...(p.ipBlock.except ?? [])] } }
      : {}),
  };
}

function policyPort(p: V1NetworkPolicyPort) {
  return {
    protocol: protocolOf(p.protocol),
    ...(p.port !== undefined ? { port: intOrString(p.port) } : {}),
    ...(p.endPort !== undefined ? { endPort: p.endPort } : {}),
  };
}

type Protocol = 'TCP' | 'UDP' | 'SCTP';
/** An unknown protocol is passed through so that the contract refuses it by name, not silently. */
function protocolOf(p: string | undefined): Protocol {
  return (p ?? 'TCP') as Protocol;
}

/** client-node types IntOrString as a string even when the API sent a number. */
function intOrString(v: unknown): number | string {
  if (typeof v === 'number') return v;
  const s = String(v);
  return /^[0-9]+$/.test(s) ? Number(s) : s;
}

function isString(v: string | undefined): v is string {
  return typeof v === 'string';
}
