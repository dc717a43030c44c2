import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Node's globals, as the entry points and scripts use them (read-only). */
const node = Object.fromEntries(['process', 'Buffer', 'console', 'setTimeout', 'clearTimeout', 'URL', 'performance'].map((n) => [n, 'readonly']));
const commonjs = Object.fromEntries(['require', 'module', 'exports', '__dirname', '__filename'].map((n) => [n, 'readonly']));

/**
 * The layering of src/, checked on import specifiers (relative paths; every directory named here is unique in
 * the tree). A later block's no-restricted-imports replaces an earlier one's, so each block lists every
 * pattern that applies to it.
 */
const forbid = (dirs, message) => ({ regex: `(^|/)(${dirs.join('|')})/`, message });
const testOnly = forbid(['kvm-lab', 'test', 'bench'], 'production code must not depend on the KVM lab, tests or benchmarks (they may import it, not the other way)');
const hostSide = forbid(['sandbox', 'shim', 'cli'], 'this layer sits below the sandbox, the shim and the CLI: it must not import them');
const vmm = forbid(['vmm'], 'the guest agent runs inside the VM: it must not import the VMM');
const layering = (...patterns) => ({ 'no-restricted-imports': ['error', { patterns }] });
// The agent's two sides meet only in src/agent/protocol (the .proto's loading and types, the error mapping).
const agentHost = forbid(['host'], 'the guest agent (src/agent/guest) must not import its host side (src/agent/host): what both use belongs in src/agent/protocol');
const agentGuest = forbid(['guest'], 'the agent client (src/agent/host) must not import the guest agent (src/agent/guest): what both use belongs in src/agent/protocol');

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'native/build/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  // The entry points (CommonJS: they load the bundles) and the build scripts (ES modules) run on Node as they are.
  {
    files: ['bin/**/*.js'],
    languageOptions: { sourceType: 'commonjs', globals: { ...node, ...commonjs } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['scripts/**/*.mjs', 'eslint.config.js'],
    languageOptions: { sourceType: 'module', globals: node },
  },
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  { files: ['src/**/*.ts'], ignores: ['src/kvm-lab/**'], rules: layering(testOnly) },
  { files: ['src/vmm/**/*.ts'], rules: layering(testOnly, hostSide) },
  { files: ['src/agent/**/*.ts'], rules: layering(testOnly, hostSide, vmm) },
  { files: ['src/agent/guest/**/*.ts'], rules: layering(testOnly, hostSide, vmm, agentHost) },
  { files: ['src/agent/host/**/*.ts'], rules: layering(testOnly, hostSide, vmm, agentGuest) },
  { files: ['src/agent/protocol/**/*.ts'], rules: layering(testOnly, hostSide, vmm, agentHost, agentGuest) },
);
