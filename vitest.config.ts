import { defineConfig } from 'vitest/config';

// One runner for the whole tree. Integration tests start real servers, so they get generous
// hook timeouts; speed is measured in bench/, never asserted here.
export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'services/*/test/**/*.test.ts', 'scripts/test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2,
  },
});
