import type { MessageContract } from './contract.ts';
import {
  EndpointSliceEvent,
  NamespaceEvent,
  NetworkPolicyEvent,
  NodeEvent,
  PodEvent,
  ServiceEvent,
} from './k8s.ts';
import {
  AddressesAllocated,
  AddressesExhausted,
  AddressesReleased,
  GcCompleted,
  GrowReply,
  GrowRequest,
  IpamAllocationsStream,
  IpamKvBucket,
  IpamNodeEvent,
  IpamNodesStream,
  NodeBlocksHeld,
} from './ipam.ts';
import {
  RouterIpcacheEvent,
  RouterRouteEvent,
  RouterServiceEvent,
  RouterStream,
  RouterSyncEvent,
} from './router.ts';
import { AgentStream, EndpointReport, NodeDesiredStream } from './agent.ts';
import {
  IdentityEvent,
  PodIdentityEvent,
  PodPolicyDesiredV2,
  PolicyIdentityBucket,
  PolicyStatusEvent,
  PolicyStream,
} from './policy.ts';
import { FlowEvent, FlowStream } from './flow.ts';
import { ErrorReply } from './reply.ts';
import { UninstallReply, UninstallRequest } from './uninstall.ts';
import type { KvBucketSpec, StreamSpec } from './streams.ts';
import { DeadLetterStream, K8sStream } from './streams.ts';

/** Every contract Dyad publishes. Docs are generated from this list; add new contracts here. */
export const ALL_CONTRACTS: readonly MessageContract[] = [
  NodeEvent,
  NamespaceEvent,
  PodEvent,
  ServiceEvent,
  EndpointSliceEvent,
  NetworkPolicyEvent,
  IpamNodeEvent,
  AddressesAllocated,
  AddressesReleased,
  AddressesExhausted,
  GcCompleted,
  GrowRequest,
  GrowReply,
  NodeBlocksHeld,
  RouterIpcacheEvent,
  RouterRouteEvent,
  RouterSyncEvent,
  RouterServiceEvent,
  EndpointReport,
  PodPolicyDesiredV2,
  IdentityEvent,
  PodIdentityEvent,
  PolicyStatusEvent,
  FlowEvent,
  UninstallRequest,
  UninstallReply,
  ErrorReply,
];

/** Requests and what may answer them (on the requester's inbox). */
export const REQUEST_REPLY: ReadonlyArray<{
  readonly request: MessageContract;
  readonly replies: readonly MessageContract[];
}> = [
  { request: GrowRequest, replies: [GrowReply, ErrorReply] },
  { request: UninstallRequest, replies: [UninstallReply, ErrorReply] },
];

export const ALL_STREAMS: readonly StreamSpec[] = [
  K8sStream,
  DeadLetterStream,
  IpamNodesStream,
  IpamAllocationsStream,
  RouterStream,
  AgentStream,
  NodeDesiredStream,
  PolicyStream,
  FlowStream,
];

/** Every KV bucket Dyad's services declare. */
export const ALL_KV_BUCKETS: readonly KvBucketSpec[] = [IpamKvBucket, PolicyIdentityBucket];

/** Lets a decoder tell "a type meant for someone else" from "a type nobody defined". */
export const CONTRACTS_BY_TYPE: ReadonlyMap<string, MessageContract> = new Map(
  ALL_CONTRACTS.map((c) => [c.type, c]),
);
