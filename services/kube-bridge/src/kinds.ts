import type { KubeConfig, KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import { CoreV1Api, DiscoveryV1Api, NetworkingV1Api } from '@kubernetes/client-node';
import type { K8sKind, MessageContract } from '@dyad/contracts';
import { K8S_EVENT_BY_KIND } from '@dyad/contracts';
import {
  normalizeEndpointSlice,
  normalizeNamespace,
  normalizeNetworkPolicy,
  normalizeNode,
  normalizePod,
  normalizeService,
} from './normalize.ts';

/** One Kubernetes resource kube-bridge mirrors: where to list and watch it, and how to normalize it. */
export interface WatchedKind {
  readonly kind: K8sKind;
  readonly namespaced: boolean;
  /** Watch path, e.g. `/api/v1/pods`. */
  readonly path: string;
  readonly contract: MessageContract;
  readonly list: () => Promise<KubernetesListObject<KubernetesObject>>;
  readonly normalize: (obj: KubernetesObject) => unknown;
}

/** The six kinds Dyad needs. Listing is cluster-wide: kube-bridge is the one watcher. */
export function watchedKinds(kc: KubeConfig): readonly WatchedKind[] {
  const core = kc.makeApiClient(CoreV1Api);
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  const networking = kc.makeApiClient(NetworkingV1Api);
  // Each entry casts once at this boundary: the informer hands back the same shape it listed.
  const kind = <T extends KubernetesObject>(
    k: K8sKind,
    namespaced: boolean,
    path: string,
    list: () => Promise<KubernetesListObject<T>>,
    normalize: (o: T) => unknown,
  ): WatchedKind => ({
    kind: k,
    namespaced,
    path,
    contract: K8S_EVENT_BY_KIND[k],
    list,
    normalize: normalize as (o: KubernetesObject) => unknown,
  });
  return [
    kind('Node', false, '/api/v1/nodes', () => core.listNode(), normalizeNode),
    kind('Namespace', false, '/api/v1/namespaces', () => core.listNamespace(), normalizeNamespace),
    kind('Pod', true, '/api/v1/pods', () => core.listPodForAllNamespaces(), normalizePod),
    kind(
      'Service',
      true,
      '/api/v1/services',
      () => core.listServiceForAllNamespaces(),
      normalizeService,
    ),
    kind(
      'EndpointSlice',
      true,
      '/apis/discovery.k8s.io/v1/endpointslices',
      () => discovery.listEndpointSliceForAllNamespaces(),
      normalizeEndpointSlice,
    ),
    kind(
      'NetworkPolicy',
      true,
      '/apis/networking.k8s.io/v1/networkpolicies',
      () => networking.listNetworkPolicyForAllNamespaces(),
      normalizeNetworkPolicy,
    ),
  ];
}
