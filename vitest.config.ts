import { defineConfig } from 'vitest/config';

// One runner for the whole tree. Integration tests start real servers, so they get generous
// hook timeouts; speed is measured in bench/, never asserted here.
export default defineConfig({
  test: {
    include: [
      'packages/*/test/**/*.test.ts',
      'services/*/test/**/*.test.ts',
      'lab/test/**/*.test.ts',
      'scripts/test/**/*.test.ts',
      'deploy/test/**/*.test.ts',
      'examples/test/**/*.test.ts',
    ],
    // Hang guards, not speed limits: the lab's end-to-end tests start whole clusters.
    testTimeout: 600_000,
    hookTimeout: 600_000,
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2,
  },
});
