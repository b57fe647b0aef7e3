// The agent's test harness as other packages may use it (the benches): its public door for
// tests, `@dyad/datapath-agent/testing`, apart from the production one.
export {
  CNI_BIN_DIR,
  DATAPATH_OBJECT,
  DYAD_CNI,
  buildSkipReason,
  ensureBpfBuilt,
  ensureCniBuilt,
} from './build.ts';
export { AgentHarness, apiGet, run } from './harness.ts';
export type { AgentHandle, CniRun } from './harness.ts';
