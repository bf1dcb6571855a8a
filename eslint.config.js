// Lint configuration: typescript-eslint's recommended rules, type-aware where it catches real bugs
// (floating promises in a daemon are lost errors).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'target/**', 'build/**', 'native/**', '.cache/**', '.tap/**', 'bench/results/**', '**/*.mjs', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // The jsfuzz targets are CommonJS (jsfuzz loads them with require) outside the TS project.
    files: ['fuzz/js/**/*.js'],
    languageOptions: {
      sourceType: 'commonjs',
      parserOptions: { projectService: false },
      globals: { require: 'readonly', module: 'writable', __dirname: 'readonly', __filename: 'readonly', process: 'readonly', Buffer: 'readonly', console: 'readonly' },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off', '@typescript-eslint/no-floating-promises': 'off' },
  },
  {
    // tap's `t.test(...)` returns a promise the runner itself awaits.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-floating-promises': 'off' },
  },
);
