import { defineConfig } from 'vitest/config';

// Until the root config includes lab/test: `npx vitest run --config lab/vitest.config.ts`.
export default defineConfig({
  test: {
    include: ['lab/test/**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 600_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
