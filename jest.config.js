// Three kinds of tests, as in DESIGN.md §6: unit (pure, no root), engine (real kernel),
// e2e (a private containerd started once per run by the e2e project's global setup).
const transform = { '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022' } }] };
const common = { testEnvironment: 'node', transform, moduleFileExtensions: ['ts', 'js', 'json', 'node'] };

module.exports = {
  testTimeout: 60000,
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    { ...common, displayName: 'engine', testMatch: ['<rootDir>/test/engine/**/*.test.ts'] },
    {
      ...common,
      displayName: 'e2e',
      testMatch: ['<rootDir>/test/e2e/**/*.test.ts'],
      globalSetup: '<rootDir>/test/rig/global-setup.ts',
      globalTeardown: '<rootDir>/test/rig/global-teardown.ts',
    },
  ],
};
