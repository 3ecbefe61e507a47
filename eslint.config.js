import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// The layering rule from docs/architecture.md: core/ imports only Node built-ins, and a filter
// never reaches into another filter, the server, or the upstream layer.
const layering = (from, forbidden) => ({
  files: [from],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: forbidden.map((group) => ({
          group: [group],
          message: `not allowed from ${from}`,
        })),
      },
    ],
  },
});

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'bench/results/', 'schema/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        URL: 'readonly',
        AbortController: 'readonly',
        performance: 'readonly',
        fetch: 'readonly',
        TextEncoder: 'readonly',
        TextDecoder: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  layering('src/core/**', ['../*', '!./*']),
  layering('src/routing/**', ['../server/*', '../proxy/*', '../upstream/*', '../filters/*']),
  layering('src/filters/**', ['../../server/*', '../../upstream/*', '../../proxy/*']),
  layering('src/upstream/**', ['../server/*', '../filters/*', '../proxy/*']),
);
