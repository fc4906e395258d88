// Vitest configuration: unit tests beside the code, integration/e2e/golden tests under test/.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    // Host-touching tests share bridges, LXC and the pool: run files one at a time.
    fileParallelism: false,
    pool: 'forks',
    globalSetup: ['test/helpers/global-setup.ts'],
  },
});
