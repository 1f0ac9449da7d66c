import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // transparent huge pages only where a region asks for them, for the whole run
    globalSetup: ['test/helpers/global-setup.ts'],
    pool: 'forks',
    // Tests drive live processes and machine settings (swap, KSM, hugepages): one file at a time.
    fileParallelism: false,
    execArgv: ['--import', 'tsx'],
    disableConsoleIntercept: true,
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
