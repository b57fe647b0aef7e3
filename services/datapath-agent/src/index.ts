export { agentStatus, startApiServer } from './api.ts';
export { loadConfig } from './config.ts';
export { NodeDatapath } from './datapath/node.ts';
export { MirroredMap } from './datapath/mirror.ts';
export { desiredMaps, endpointView } from './datapath/desired-maps.ts';
export { DatapathReconciler } from './datapath/reconciler.ts';
export { GroupCommitFile } from './durable.ts';
export { EndpointManager } from './endpoint-manager.ts';
export { DesiredStateFollower, routerEntryInfo } from './follower.ts';
export { NodeAllocator } from './ipam/allocator.ts';
export { NodeIpam } from './ipam/node-ipam.ts';
export { CniError, ConfigError, NetlinkError, NetnsError, StateError } from './errors.ts';
export { handleCni } from './cni/handler.ts';
export { parseRequest, parseCniArgs, Envelope, NetConf, PrevResult } from './cni/request.ts';
export { buildResult, errorResult, versionResult } from './cni/result.ts';
export { startCniServer } from './cni/server.ts';
export { CniCode, LATEST_VERSION, SUPPORTED_VERSIONS } from './cni/spec.ts';
export { endpointMacs, hostIfName, nextEndpointId, endpointKey } from './endpoint.ts';
export { createAgentMetrics, createReconcileHistogram } from './metrics.ts';
export { openLibc } from './netlink/libc.ts';
export { Netns } from './netlink/netns.ts';
export { NetlinkSocket } from './netlink/socket.ts';
export {
  createVeth,
  deleteLink,
  hostSideRequests,
  linkByName,
  podSideRequests,
  setLinkUp,
} from './netlink/rtnl.ts';
export { NodeRoutes, routeChanges } from './node-routes.ts';
export { PodPlumber } from './plumber.ts';
export { NatsEndpointReporter, endpointState } from './reporter.ts';
export { loadState, renderState } from './state.ts';

export type { AgentStatus, ApiServer, ApiSources } from './api.ts';
export type { AgentConfig } from './config.ts';
export type { AttachState } from './datapath/node.ts';
export type { MapWriteStats } from './datapath/mirror.ts';
export type {
  DesiredInputs,
  DesiredMaps,
  EndpointView,
  PodPolicy,
  PolicyState,
  RouterState,
} from './datapath/desired-maps.ts';
export type {
  AgentLogger,
  Allocated,
  EndpointReporter,
  PodAddressing,
  RestoreReport,
} from './endpoint-manager.ts';
export type { CniBackend, CniReply } from './cni/handler.ts';
export type {
  AddRequest,
  Attachment,
  CheckRequest,
  CniRequest,
  DelRequest,
  GcRequest,
  PodRef,
  StatusRequest,
  VersionRequest,
} from './cni/request.ts';
export type { CniResult } from './cni/result.ts';
export type { CniServer } from './cni/server.ts';
export type { CniCommand, CniVersion } from './cni/spec.ts';
export type { Endpoint, EndpointAddress } from './endpoint.ts';
export type { AgentMetrics } from './metrics.ts';
export type { Libc } from './netlink/libc.ts';
export type { StateFile, StoredEndpoint, Phase } from './state.ts';
export { FlowDirectory } from './flows/directory.ts';
export { FlowExporter } from './flows/exporter.ts';
export { FLOW_QUEUE, FLOW_UNCONFIRMED } from './flows/flows.ts';
export { flowOf } from './flows/flow-of.ts';
