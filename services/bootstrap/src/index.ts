export { StreamKeeper } from './keeper.ts';
export type { KeeperOptions } from './keeper.ts';
export { createBootstrapMetrics } from './metrics.ts';
export type { BootstrapMetrics } from './metrics.ts';
export { loadConfig } from './config.ts';
export type { BootstrapConfig } from './config.ts';
