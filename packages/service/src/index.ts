export { runService, startService } from './run.ts';
export type {
  RunningService,
  ServiceConfig,
  ServiceContext,
  ServiceSpec,
  StartedService,
  StartOptions,
} from './run.ts';
export { startOverOnReconnect } from './start-over.ts';
export type { StartOver, StartedOver } from './start-over.ts';
