export { IpamService } from './service.ts';
export type { IpamServiceOptions } from './service.ts';

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
export type { AddressUsage, IpamMetrics } from './metrics.ts';

export { AllocationError, Allocator, limitingFamily } from './allocator.ts';
export type { AllocateInput, AllocateOutcome, Held, ReleaseOutcome } from './allocator.ts';

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
  parseCidr,
} from './addr.ts';
export type { CidrParse, CidrValue } from './addr.ts';
export {
  addBlocks,
  orderedAddresses,
  slotAddress,
  slotCapacity,
  slotIps,
  slotOf,
} from './record.ts';
export type { BlockRef, NodeBlocks, NodeRecord, SlotRecord } from './record.ts';

export {
  IpamConfigConflictError,
  IpamConfigError,
  IpamError,
  SettingsError,
  StoreError,
} from './errors.ts';
