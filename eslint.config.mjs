// ESLint over the TypeScript in src/ and test/, with type information from tsconfig.json:
// ESLint's and typescript-eslint's recommended rules, the type-checked set. Layout is
// prettier's job (make fmt), not ESLint's.
import eslint from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['src/gen/', 'dist/', 'build/', 'addon/', 'node_modules/'] },
  {
    files: ['src/**/*.ts', 'test/**/*.ts'],
    extends: [eslint.configs.recommended, tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
  },
);
