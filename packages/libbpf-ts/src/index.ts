export { Libbpf } from './libbpf.ts';
export { bindLibbpf } from './ffi.ts';
export { BpfObject, BpfProgram } from './object.ts';
export { BpfMap } from './map.ts';
export { MapType, UpdateFlags, isPerCpu } from './map-types.ts';
export { Tc } from './tc.ts';
export { RingBufferReader } from './ringbuf.ts';
export { readBtfEnum, readBtfStruct } from './btf.ts';
export { LibbpfError, CodecError, ClosedError, LibbpfLoadError } from './errors.ts';
export { errnoName } from './errno.ts';
export {
  structCodec,
  mappedCodec,
  mapCodec,
  bytesCodec,
  rawMapCodec,
  u32Codec,
  encode,
} from './codec.ts';
export { defineLayout, validateLayout, fieldSize, fieldAt } from './layout.ts';

export {
  familyOfTag,
  IpcachePrefix,
  PolicyPrefix,
  PolicyCidrPrefix,
  PolicyClass,
  Direction,
  Identity,
  EndpointFlags,
  IpcacheFlags,
  Reason,
  EventFlags,
  EventType,
  PolicyAction,
  ConfigFlags,
  Proto,
  CtFlags,
  DatapathMaps,
  DatapathPrograms,
  directionName,
  reasonName,
} from './datapath/constants.ts';
export {
  endpointKeyToStruct,
  endpointInfoToStruct,
  endpointKeyLayout,
  endpointInfoLayout,
  endpointKeyCodec,
  endpointInfoCodec,
  endpointsCodec,
} from './datapath/endpoints.ts';
export {
  ipcacheKeyToStruct,
  ipcacheInfoToStruct,
  ipcacheKeyLayout,
  ipcacheInfoLayout,
  ipcacheKeyCodec,
  ipcacheInfoCodec,
  ipcacheCodec,
  encodeIpcachePrefix,
  IPCACHE_PREFIX_BASE,
} from './datapath/ipcache.ts';
export {
  policyKeyLayout,
  policyValueLayout,
  policyKeyCodec,
  policyValueCodec,
  policyCodec,
  portRangePrefixes,
  policyKeys,
  POLICY_PREFIX_PROTO,
  POLICY_PREFIX_PORT,
} from './datapath/policy.ts';
export {
  policyCidrKeyLayout,
  policyCidrValueLayout,
  policyCidrKeyCodec,
  policyCidrValueCodec,
  policyCidrCodec,
  POLICY_CIDR_PREFIX_BASE,
  POLICY_CLASS_BASE,
} from './datapath/policy-cidr.ts';
export {
  ctKeyLayout,
  ctEntryLayout,
  ctKeyCodec,
  ctEntryCodec,
  conntrackCodec,
  sweepConntrack,
  ConntrackTables,
  CT_TABLE_ENTRIES_DEFAULT,
  monotonicNs,
} from './datapath/conntrack.ts';
export {
  metricsKeyLayout,
  metricsValueLayout,
  metricsKeyCodec,
  metricsValueCodec,
  metricsCodec,
  sumPerCpu,
} from './datapath/metrics.ts';
export { fragKeyLayout, fragInfoLayout, fragsCodec } from './datapath/frags.ts';
export { eventLayout, eventCodec, decodeDatapathEvent } from './datapath/events.ts';
export { configLayout, configValueCodec, configCodec } from './datapath/config.ts';
export { datapathLayouts, datapathMapLayouts } from './datapath/layouts.ts';
export {
  LbBackendFlags,
  LbConst,
  LbRnatFlags,
  LbServiceFlags,
  LbSnatFlags,
  lbAffinityMapCodec,
  lbBackendsCodec,
  lbFlowsCodec,
  lbMaglevMapCodec,
  lbRnatMapCodec,
  lbServicesCodec,
  lbSnatMapCodec,
  maglevTable,
} from './datapath/lb.ts';
export { loadDatapath, openPinnedDatapath, DEFAULT_DATAPATH_OBJECT } from './datapath/loader.ts';

export type { LibbpfOptions, CreateMapSpec } from './libbpf.ts';
export type { LibbpfBindings, Ptr } from './ffi.ts';
export type { OpenObjectOptions } from './object.ts';
export type { BpfMapOptions, Liveness } from './map.ts';
export type { MapInfo, UpdateMode } from './map-types.ts';
export type { TcDirection, TcHookRef, TcFilterRef, TcAttachOptions, TcAttachment } from './tc.ts';
export type { RingBufferOptions } from './ringbuf.ts';
export type { BtfStruct, BtfMember } from './btf.ts';
export type { Codec, MapCodec } from './codec.ts';
export type { FieldKind, FieldSpec, StructLayout, StructValue } from './layout.ts';
export type { DirectionName } from './datapath/constants.ts';
export type { EndpointKey, EndpointInfo } from './datapath/endpoints.ts';
export type { IpcacheKey, IpcacheInfo } from './datapath/ipcache.ts';
export type { PolicyKey, PolicyValue, PolicyRule, PolicyDirection } from './datapath/policy.ts';
export type { PolicyCidrKey, PolicyCidrValue } from './datapath/policy-cidr.ts';
export type { CtKey, CtEntry } from './datapath/conntrack.ts';
export type { MetricsKey, MetricsValue } from './datapath/metrics.ts';
export type { DatapathEvent } from './datapath/events.ts';
export type { DatapathConfig } from './datapath/config.ts';
export type {
  LbAffinity,
  LbAffinityKey,
  LbBackend,
  LbFlow,
  LbFlowKey,
  LbProtocol,
  LbRnat,
  LbService,
  LbServiceKey,
  LbSnat,
} from './datapath/lb.ts';
export type { DatapathMapSet, LoadedDatapath, LoadDatapathOptions } from './datapath/loader.ts';
