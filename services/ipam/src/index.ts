export { IpamService } from './service.ts';
export type { IpamServiceOptions } from './service.ts';

export { AssignError, Assigner } from './assigner.ts';
export type {
  AssignerEffects,
  AssignerOptions,
  GcSummary,
  NodeInfo,
  NodeStatus,
} from './assigner.ts';
export { HeldView } from './held.ts';

export {
  ALL_CONFIG_KEYS,
  ConfigKey,
  DEFAULTS,
  envNameOf,
  mergeConfigSources,
  parseIpamConfig,
} from './config.ts';
export type { IpamConfig, RawConfig } from './config.ts';
export { compatibilityProblems } from './compat.ts';
export { loadSettings, readConfigDir } from './settings.ts';
export type { IpamSettings } from './settings.ts';

export { createIpamMetrics } from './metrics.ts';
export type { IpamMetrics, PoolUsage } from './metrics.ts';

export {
  RESERVED_LOW,
  blockAddresses,
  blockAt,
  blockIndexOf,
  maxMaskSize,
  nextFree,
  reservedHigh,
  totalBlocks,
} from './carve.ts';
export type { BlockAddresses, BlockLayout } from './carve.ts';
export {
  cidrContains,
  cidrsOverlap,
  formatAddress,
  formatCidr,
  parseAddress,
  tryCidrValue,
} from './addr.ts';
export type { CidrValue } from './addr.ts';
export {
  blockList,
  canonicalBlock,
  missingBlocks,
  placeBlocks,
  sameSets,
  setCount,
  setsFromBlocks,
} from './record.ts';
export type { BlockRef, BlockSet, BlockSlot, NodeRecord } from './record.ts';
export { IpamStore } from './store.ts';

export {
  IpamConfigConflictError,
  IpamConfigError,
  IpamError,
  SettingsError,
  StoreError,
} from './errors.ts';
