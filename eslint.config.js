import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Node's globals, as the entry points and scripts use them (read-only). */
const node = Object.fromEntries(['process', 'Buffer', 'console', 'setTimeout', 'clearTimeout', 'URL', 'performance'].map((n) => [n, 'readonly']));
const commonjs = Object.fromEntries(['require', 'module', 'exports', '__dirname', '__filename'].map((n) => [n, 'readonly']));

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
);
