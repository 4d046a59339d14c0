import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['__test__/**/*.test.ts'],
    // Kernel tests build namespaces and send packets; a generous timeout avoids flakes on 2 cores.
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
})
