export { ANY_PEER, DirectionBuilder } from './assemble.ts';
export { comparePrefixes, contains, readPrefix, resolveGrants } from './cidr.ts';
export { compileAll, podsPeerMatches } from './compile.ts';
export { loadConfig } from './config.ts';
export { PolicyEngine } from './engine.ts';
export {
  IdentityAllocationError,
  IdentityStoreError,
  PolicyConfigError,
  PolicyError,
} from './errors.ts';
export { directionAllows } from './evaluate.ts';
export { IdentityStore } from './identity-store.ts';
export {
  NAMESPACE_NAME_LABEL,
  identityLabels,
  labelSetHash,
  labelSetKey,
  namespaceLabels,
  selectorMatches,
  splitIdentityLabels,
} from './labels.ts';
export { createPolicyMetrics } from './metrics.ts';
export { podKey, samePod } from './model.ts';
export { MAX_PORT, PROTOCOLS, PortSet, Protocol, resolvePorts } from './ports.ts';
export { PolicyService, containerPorts, isPolicyPod, podAddresses, readStored } from './service.ts';
export { LastValueSink, stableJson } from './sink.ts';
export { normalizePolicy, objectKey } from './spec.ts';

export type { CidrAllow, CidrGrant, CidrTable, Prefix } from './cidr.ts';
export type { PolicyConfig } from './config.ts';
export type { Peer } from './evaluate.ts';
export type { IdentityStoreLogger, IdentityStoreOptions } from './identity-store.ts';
export type { IdentityParts, Labels } from './labels.ts';
export type { PolicyMetrics } from './metrics.ts';
export type { CompileOptions, CompiledPod, PodInput, PodPolicyBody, PolicyDelta } from './model.ts';
export type { ContainerPortInput, PortSpec } from './ports.ts';
export type { PolicyServiceOptions, StoredOutputs } from './service.ts';
export type { SinkOptions, SinkPort } from './sink.ts';
export type { BlockPeer, PeerSpec, PodsPeer, PolicySpec, RuleSpec } from './spec.ts';
