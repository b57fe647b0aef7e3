export { RouterCore } from './core.ts';
export { computeState } from './compute.ts';
export { applyUpdate, diffState, isEmptyUpdate } from './diff.ts';
export { placeholderIdentity } from './identity.ts';
export { canonicalAddress, canonicalPrefix, familyOf, hostPrefix } from './ip.ts';
export { emptyState, sameIpcacheEntry, sameRoute } from './model.ts';
export { RouterConfigError, RouterError, RouterPublishError } from './errors.ts';

export type { Family } from './ip.ts';
export type {
  EndpointInput,
  IpcacheEntry,
  NodeInput,
  NodeState,
  NodeUpdate,
  RouteEntry,
  World,
} from './model.ts';
