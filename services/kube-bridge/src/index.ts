export { createBridgeMetrics } from './metrics.ts';
export type { BridgeMetrics } from './metrics.ts';
