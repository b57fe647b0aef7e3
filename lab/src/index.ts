export { LAB_USAGE, labDown, labMain, labStatus, labUp } from './commands.ts';
export { cleanupLab, cleanupRun, ownedPrefixes } from './cleanup.ts';
export { ControlClient } from './control.ts';
export { CniPluginError, Conflist, cniAdd, cniDel, podIpsFromResult } from './cni.ts';
export { KubeClient } from './kube-client.ts';
export { DEFAULT_OPTIONS, MAX_NODES, PREFIX_PATTERN, makePlan, parseUpArgs } from './plan.ts';
export { ENV_DIR, ENV_RUN, labPaths } from './paths.ts';
export { ProbeSpec, Prober } from './probe.ts';
export { listPodRecords, parsePodRef, readPodRecord } from './records.ts';
export { readState } from './state.ts';
export { alive, nsenterArgs } from './sys.ts';
export {
  KubeApiError,
  LabCommandError,
  LabError,
  LabNotRunningError,
  LabUsageError,
  UnknownPodError,
} from './errors.ts';

export type { LabIo } from './commands.ts';
export type { CleanupReport } from './cleanup.ts';
export type { ConflistValue, CniResultValue, RuntimeConf } from './cni.ts';
export type { KubeTls, WatchEvent } from './kube-client.ts';
export type { LabOptions, LabPlan, NodePlan } from './plan.ts';
export type { LabPaths } from './paths.ts';
export type { ProbeAnswer, ProbeResult, ProbeSpecValue } from './probe.ts';
export type { ProbeOutcome, ProbeProtocol } from './probe-once.ts';
export type { PodRecordValue } from './records.ts';
export type { LabStateValue, NodeRecordValue, ProcessRecordValue } from './state.ts';
