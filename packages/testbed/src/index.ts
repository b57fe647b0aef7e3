export { CommandError, StartupError, ToolMissingError } from './errors.ts';
export { freePort, freePorts } from './ports.ts';
export { ManagedProcess, readLogTail, spawnLogged, waitUntilReady } from './process.ts';
export { keepFromEnv, makeTempDir, removeTempDir } from './reaper.ts';
export { createCa, createServiceAccountKeys, issueCert } from './certs.ts';
export { firstAddress, splitCidrs } from './cidr.ts';
export { httpGet, probe200 } from './http.ts';
export { TOOL_NAMES, defaultToolsBinDir, repoRoot, toolPath } from './tools.ts';
export { startNats } from './nats.ts';
export { natsConfig } from './nats-config.ts';
export { createNatsSecurity, credsFileText, natsSecurityConfig } from './nats-security.ts';
export { DEFAULT_SERVICE_CLUSTER_IP_RANGE, startKube } from './kube.ts';
export { openIcmp, ping } from './ping.ts';
export { kernelRequired, kernelSkipReason } from './kernel-gate.ts';
export { childPassThroughEnv } from './bench-env.ts';
export { prng } from './prng.ts';

export type { ExitInfo, SpawnSpec, WaitOptions } from './process.ts';
export type { CertRequest, KeyPair, ServiceAccountKeys } from './certs.ts';
export type { HttpResponse, TlsMaterial } from './http.ts';
export type { ToolName } from './tools.ts';
export type { NatsOptions, NatsServer } from './nats.ts';
export type { NatsClusterMember, NatsConfigOptions } from './nats-config.ts';
export type {
  IdentityPermissions,
  NatsIdentity,
  NatsSecurity,
  NatsSecurityRequest,
  NatsTlsFiles,
} from './nats-security.ts';
export type { KubeCluster, KubeComponent, KubeOptions } from './kube.ts';
export type { IcmpSocket, PingOptions, PingResult } from './ping.ts';
export type { KernelGateOptions } from './kernel-gate.ts';
