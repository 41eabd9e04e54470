// Type-aware lint rules, plus the layer rules from DESIGN.md §2: only src/db imports `pg`, and
// nothing below screens/components imports React or Ink.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import reactHooks from 'eslint-plugin-react-hooks';

const reactImports = {
  paths: [
    { name: 'react', message: 'React belongs to src/screens and src/components only (DESIGN.md §2).' },
    { name: 'ink', message: 'Ink belongs to src/screens and src/components only (DESIGN.md §2).' },
  ],
  patterns: [{ group: ['ink-*', 'react/*', 'react-dom*'], message: 'UI libraries belong to src/screens and src/components only.' }],
};
const pgImports = {
  paths: [{ name: 'pg', message: 'Only src/db talks to the driver; go through src/db (DESIGN.md §2).' }],
  patterns: [{ group: ['pg-*', 'pg/*'], message: 'Only src/db talks to the driver.' }],
};

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'bin/**', '.pgwarden-demo/**', 'bench/*.mjs', 'scripts/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    plugins: { 'react-hooks': reactHooks },
    rules: {
      ...reactHooks.configs.recommended.rules,
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      '@typescript-eslint/no-unnecessary-condition': 'off',
      '@typescript-eslint/no-confusing-void-expression': 'off',
      // `this: void` on interface methods: bivariant row callbacks that are safe to pass around unbound.
      '@typescript-eslint/no-invalid-void-type': ['error', { allowAsThisParameter: true }],
      'no-console': 'error',
      'no-restricted-imports': ['error', { paths: [...reactImports.paths, ...pgImports.paths], patterns: [...reactImports.patterns, ...pgImports.patterns] }],
    },
  },
  {
    files: ['src/db/**'],
    rules: { 'no-restricted-imports': ['error', reactImports] },
  },
  {
    files: ['src/screens/**', 'src/components/**', 'src/app/**'],
    rules: { 'no-restricted-imports': ['error', pgImports] },
  },
  {
    // Tests and benchmarks create situations with the driver directly and print figures.
    files: ['test/**', 'bench/**', '*.config.*'],
    rules: {
      'no-restricted-imports': 'off',
      'no-console': 'off',
      // waitFor() and friends take async callbacks whether or not they await.
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    files: ['eslint.config.js'],
    ...tseslint.configs.disableTypeChecked,
  },
);
