export { RouterCore } from './core.ts';
export { computeState } from './compute.ts';
export { applyUpdate, diffState, isEmptyUpdate } from './diff.ts';
export { PodIdentities } from './identity.ts';
export { endpointInput, nodeAddresses, nodePodCidrs } from './inputs.ts';
export { canonicalAddress, canonicalPrefix, familyOf, hostPrefix } from './ip.ts';
export { emptyState, sameIpcacheEntry, sameRoute } from './model.ts';
export { createRouterMetrics } from './metrics.ts';
export { RouterService } from './service.ts';
export { emptyStored, publishUpdates, storedFromMessages } from './sink.ts';
export { busRouterPort } from './stream-port.ts';
export { loadConfig } from './config.ts';
export { RouterConfigError, RouterError, RouterPublishError } from './errors.ts';

export type {
  EndpointInput,
  IpcacheEntry,
  NodeInput,
  NodeState,
  NodeUpdate,
  RouteEntry,
  World,
} from './model.ts';
export type { IdentitySource, PodRef } from './identity.ts';
export type { RouterMetrics } from './metrics.ts';
export type { RouterServiceOptions } from './service.ts';
export type {
  IpcacheMessage,
  PublishOptions,
  PublishResult,
  RouteMessage,
  RouterStreamPort,
  StoredNode,
  SyncMessage,
} from './sink.ts';
export type { RouterConfig } from './config.ts';
