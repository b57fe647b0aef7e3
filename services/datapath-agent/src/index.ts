export { loadConfig } from './config.ts';
export {
  AllocatorError,
  CniError,
  ConfigError,
  NetlinkError,
  NetnsError,
  StateError,
} from './errors.ts';
export { handleCni } from './cni/handler.ts';
export { parseRequest, parseCniArgs, Envelope, NetConf, PrevResult } from './cni/request.ts';
export { buildResult, errorResult, versionResult } from './cni/result.ts';
export { CniCode, LATEST_VERSION, SUPPORTED_VERSIONS } from './cni/spec.ts';
export { endpointMacs, hostIfName, nextEndpointId, endpointKey } from './endpoint.ts';

export type { AgentConfig } from './config.ts';
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
export type { CniCommand, CniVersion } from './cni/spec.ts';
export type { Endpoint, EndpointAddress } from './endpoint.ts';
