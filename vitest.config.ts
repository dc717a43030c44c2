import { defineConfig } from 'vitest/config';

// Two projects: "fast" runs in seconds and in parallel; "slow" boots real VMs (QEMU TCG, the KVM lab)
// and runs one file at a time because two cores cannot emulate two guests at once without timeouts.
export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    // A `vrun run` without --network joins the default bridge, which lives in the namespace vrun runs in: the
    // host's, for a test. Tests must keep every bridge and rule in a namespace of their own, so by default
    // they get loopback only; the network tests run vrun inside their own namespace with --network given.
    env: { VRUN_NETWORK: 'none' },
    projects: [
      {
        extends: true,
        test: {
          name: 'fast',
          include: ['test/**/*.test.ts'],
          exclude: ['test/**/*.slow.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'slow',
          include: ['test/**/*.slow.test.ts'],
          testTimeout: 600_000,
          hookTimeout: 900_000,
          pool: 'forks',
          poolOptions: { forks: { singleFork: true } },
        },
      },
    ],
  },
});
