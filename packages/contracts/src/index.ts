export { defineMessage } from './contract.ts';
export type { MessageContract, PayloadOf } from './contract.ts';

export {
  CE_SPECVERSION,
  CONTENT_TYPE_JSON,
  Header,
  MAX_EVENT_BYTES,
  RejectReason,
  dataSchemaUri,
  decodeEvent,
  encodeEvent,
  formatIssues,
} from './cloudevents.ts';
export type {
  Decoded,
  EncodeOptions,
  EncodedEvent,
  EventMeta,
  HeaderSource,
} from './cloudevents.ts';

export { ContractError, InvalidOutgoingMessageError, InvalidSubjectTokenError } from './errors.ts';

export { Cidr, FamilyAddress, FamilySchema, IpAddress } from './family.ts';

export {
  EndpointSlice,
  EndpointSliceEvent,
  K8S_EVENT_BY_KIND,
  K8S_STREAM,
  K8sKind,
  LabelSelector,
  Namespace,
  NamespaceEvent,
  NetworkPolicy,
  NetworkPolicyEvent,
  Node,
  NodeEvent,
  ObjectMeta,
  Pod,
  PodEvent,
  Service,
  ServiceEvent,
} from './k8s.ts';
export type {
  EndpointSliceObject,
  LabelSelectorObject,
  NamespaceObject,
  NetworkPolicyObject,
  NodeObject,
  PodObject,
  ServiceObject,
} from './k8s.ts';

export {
  UNINSTALL_FILTER,
  UNINSTALL_SUBJECT_ROOT,
  UninstallReply,
  UninstallRequest,
  uninstallSubject,
} from './uninstall.ts';

export {
  AddressesAllocated,
  AddressesExhausted,
  AddressesReleased,
  ContainerId,
  GcCompleted,
  GrowReply,
  GrowRequest,
  IPAM_ALLOCATIONS_STREAM,
  IPAM_EXHAUSTED_FILTER,
  IPAM_GROW_FILTER,
  IPAM_HELD_FILTER,
  IPAM_KV_BUCKET,
  IPAM_NODE_FILTER,
  IPAM_NODES_STREAM,
  IPAM_SUBJECT_ROOT,
  IpamBlockClaim,
  IpamAllocationsStream,
  IpamClusterConfig,
  IpamErrorCode,
  IpamEventKind,
  IpamKey,
  IpamKvBucket,
  IpamNodeEvent,
  IpamNodeRecord,
  IpamNodesStream,
  IpamSlotRecord,
  IpamSubject,
  K8sName,
  K8sNamespace,
  NodeBlock,
  NodeBlocksHeld,
  PodUid,
  ReleaseReason,
  ipamAllocFilter,
  ipamAllocSubject,
  parseIpamAllocSubject,
  ipamEventSubject,
  ipamExhaustedSubject,
  ipamGrowSubject,
  ipamHeldSubject,
  ipamNodeSubject,
} from './ipam.ts';
export type {
  IpamBlockClaimValue,
  IpamClusterConfigValue,
  IpamNodeRecordValue,
  IpamSlotRecordValue,
  NodeBlockValue,
} from './ipam.ts';

export {
  IpcacheEntryKind,
  ROUTER_STREAM,
  ROUTER_SUBJECT_ROOT,
  ReservedIdentity,
  RouterIpcacheEntry,
  RouterIpcacheEvent,
  RouterRouteEntry,
  RouterRouteEvent,
  RouterServiceEntry,
  RouterServiceEvent,
  RouterStream,
  RouterSyncEvent,
  ServiceBackend,
  ServiceBackendState,
  ServiceFrontend,
  ServiceProblem,
  ServiceProblemCode,
  routerIpcacheFilter,
  routerIpcacheSubject,
  routerNodeFilter,
  routerRouteFilter,
  routerRouteSubject,
  routerServiceFilter,
  routerServiceSubject,
  routerSyncSubject,
} from './router.ts';
export type {
  RouterIpcacheEntryValue,
  RouterRouteEntryValue,
  RouterServiceEntryValue,
  ServiceBackendValue,
  ServiceFrontendValue,
  ServiceProblemValue,
} from './router.ts';

export {
  AGENT_STREAM,
  AGENT_SUBJECT_ROOT,
  AgentStream,
  EndpointReport,
  EndpointState,
  NODE_DESIRED_STREAM,
  NODE_DESIRED_SUBJECT_ROOT,
  NodeDesiredStream,
  agentEndpointFilter,
  agentEndpointSubject,
  nodePolicySubject,
  parseAgentEndpointSubject,
  parseNodePolicySubject,
} from './agent.ts';
export type { EndpointStateValue } from './agent.ts';

export {
  ALL_NODES_POLICY_FILTER,
  DirectionPolicy,
  IDENTITY_NAMESPACE_KEY,
  IdentityAllow,
  IdentityEvent,
  IdentityLabelSource,
  IdentityLabelsRecord,
  IdentityRecord,
  MAX_POD_IDENTITY,
  POLICY_IDENTITY_BUCKET,
  POLICY_STREAM,
  POLICY_SUBJECT_ROOT,
  PodIdentityEvent,
  PodPolicyDesiredV2,
  PolicyFilter,
  PolicyIdentityBucket,
  PolicyIdentityKey,
  PolicyPorts,
  PolicyProblem,
  PolicyProblemCode,
  PolicyStatusEvent,
  PolicyStream,
  nodePolicyFilter,
  policyIdentitySubject,
  policyPodSubject,
  policyStatusSubject,
} from './policy.ts';
export type {
  DirectionPolicyValue,
  IdentityAllowValue,
  IdentityLabelsRecordValue,
  IdentityRecordValue,
  PolicyPortsValue,
  PolicyProblemValue,
} from './policy.ts';

export {
  AGENT_API_SOCKET,
  AgentApi,
  AgentApiError,
  AgentEndpoint,
  AgentMonitor,
  AgentStatus,
  AgentVersion,
  BpfCtEntry,
  BpfEndpointEntry,
  BpfIpcacheEntry,
  BpfLbEntry,
  BpfMetricsEntry,
  BpfPolicyEntry,
  MapWriteStats,
  RestoreReport,
} from './agent-api.ts';
export type {
  AgentApiBody,
  AgentApiErrorValue,
  AgentApiName,
  AgentApiRoute,
  AgentEndpointValue,
  AgentStatusValue,
  AgentVersionValue,
  BpfCtEntryValue,
  BpfEndpointEntryValue,
  BpfIpcacheEntryValue,
  BpfLbEntryValue,
  BpfMetricsEntryValue,
  BpfPolicyEntryValue,
  MapWriteStatsValue,
  RestoreReportValue,
} from './agent-api.ts';

export {
  FLOW_STREAM,
  FLOW_SUBJECT_ROOT,
  FlowDropReason,
  FlowEndpoint,
  FlowEvent,
  FlowLayer4,
  FlowStream,
  FlowVerdict,
  TcpFlags,
  flowFamilyToken,
  flowFilters,
  flowSubject,
  flowSubjectOf,
  flowVerdictToken,
} from './flow.ts';
export type { FlowEventValue, FlowSelector, FlowSubjectParts } from './flow.ts';

export { ErrorReply, REPLY_INBOX } from './reply.ts';

export { generateEventDocs } from './docs.ts';
export {
  ALL_CONTRACTS,
  ALL_KV_BUCKETS,
  ALL_STREAMS,
  CONTRACTS_BY_TYPE,
  REQUEST_REPLY,
} from './registry.ts';

export { DeadLetterHeader, DeadLetterStream, K8sStream } from './streams.ts';
export type { KvBucketSpec, StreamSpec } from './streams.ts';

export {
  CLUSTER_SCOPE_TOKEN,
  DEAD_LETTER_ROOT,
  K8S_SUBJECT_ROOT,
  deadLetterSubject,
  isDeadLetterSubject,
  subjectMatches,
  decodeToken,
  encodeToken,
  k8sKindFilter,
  k8sObjectSubject,
  parseK8sObjectSubject,
} from './subjects.ts';
export type { ParsedK8sSubject } from './subjects.ts';

export {
  ALL_DYAD_CONFIG_KEYS,
  DYAD_CONFIG_DIR,
  DYAD_CONFIG_MAP,
  DyadConfig,
  DyadConfigKey,
  dyadConfigProblems,
} from './config.ts';
export type { DyadConfigValue } from './config.ts';

export {
  AGENT_SERVICE,
  AUTH_CALLOUT_SUBJECT,
  PUBLIC_EVENT_SUBJECTS,
  ServiceIdentity,
  agentIdentity,
  agentPermissions,
  authCalloutPermissions,
  clusterIdentities,
  inboxPermission,
  inboxPrefix,
  servicePermissions,
} from './identities.ts';
export type { SubjectPermissions } from './identities.ts';
export { nodeBlocks, nodeClaimProblem } from './ownership.ts';
export type { NodeClaimProblem } from './ownership.ts';
