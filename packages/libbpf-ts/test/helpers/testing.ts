// The door to libbpf-ts's kernel test helpers for code outside the package (bench), as
// @dyad/libbpf-ts/testing: product code never imports it (scripts/test/boundaries.test.ts).
export { ensureBpfBuilt } from './build.ts';
export { KernelFixture } from './kernel-fixture.ts';
export { podAgentSpec, setupNode } from './topology.ts';
