export { runService, startService } from './run.ts';
export type {
  RunningService,
  ServiceConfig,
  ServiceContext,
  ServiceSpec,
  StartedService,
  StartOptions,
} from './run.ts';
