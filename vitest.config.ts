import { defineConfig } from "vitest/config";

/**
 * Multi-process cluster tests assert bounds in wall-clock time (an orphan answers within the lease
 * TTL + 5 s): they run last, one file at a time, on a machine no other test file is loading. The rest
 * runs in parallel first.
 */
const quietFiles = [
  "test/integration/cluster-failover.test.ts",
  "test/integration/cluster-fencing.test.ts",
  "test/integration/cluster-nats-loss.test.ts",
];

export default defineConfig({
  test: {
    globalSetup: ["test/helpers/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    projects: [
      {
        extends: true,
        test: { name: "parallel", include: ["test/**/*.test.ts"], exclude: quietFiles, sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        test: { name: "cluster-processes", include: quietFiles, fileParallelism: false, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
