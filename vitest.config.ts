import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Worker threads and real servers: keep each file in its own process, two at a time (2 cores).
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // A test that leaves a rejection unhandled fails the run.
    dangerouslyIgnoreUnhandledErrors: false,
  },
});
