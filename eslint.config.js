// One lint config for the whole workspace: strict, type-aware rules where they catch real bugs
// (floating promises lose errors; type-only imports keep Node's type stripping exact).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const FAMILY = 'Literal[value=/^IPv[46]$/]';
const FAMILY_HINT =
  "use Family / FAMILIES / FamilyVersion from '@dyad/netaddr', the one family vocabulary";
export const FAMILY_COPIES = [
  {
    selector: `TSLiteralType > ${FAMILY}`,
    message: `A local address-family type: ${FAMILY_HINT}.`,
  },
  {
    selector:
      'TSUnionType:has(TSLiteralType > Literal[value=4]):has(TSLiteralType > Literal[value=6])',
    message: `A numeric address-family type (4 | 6): ${FAMILY_HINT}.`,
  },
  {
    selector: `CallExpression[callee.property.name=/^(enum|literal)$/] > ${FAMILY}, CallExpression[callee.property.name='enum'] > ArrayExpression > ${FAMILY}`,
    message: `A local address-family schema: use FamilySchema from '@dyad/contracts' (${FAMILY_HINT}).`,
  },
  {
    // A list of both families kept in a constant, a Set or an `as const` (an expected value in a
    // test, or a Kubernetes object's `ipFamilies`, is data, not vocabulary).
    selector: `:matches(VariableDeclarator, TSAsExpression, NewExpression) > ArrayExpression:has(> Literal[value='IPv4']):has(> Literal[value='IPv6'])`,
    message: `A local list of both families: ${FAMILY_HINT}.`,
  },
];

export default tseslint.config(
  {
    // dist/: tsc's output of the sources linted here
    ignores: [
      '**/node_modules/**',
      '**/dist/**',
      'tools/bin/**',
      '.lab/**',
      'docs/**',
      'bpf/build/**',
    ],
  },
  js.configs.recommended,
  {
    files: ['**/*.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
  ...tseslint.configs.strict,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    // One address-family vocabulary (issue #14): `Family`, `FAMILIES`, `FamilyVersion` in
    // packages/netaddr/src/family.ts, the only file allowed to spell a family itself. Elsewhere a
    // type, zod enum or list of families written out is a local copy; scripts/test/lint.test.ts
    // shows each of these firing on a sample.
    files: ['**/*.ts'],
    ignores: ['packages/netaddr/src/family.ts'],
    rules: {
      'no-restricted-syntax': ['error', ...FAMILY_COPIES],
    },
  },
  {
    // The type-checked strict set on every TypeScript file (issue #14). Two rules relaxed where
    // they only forbid idioms: numbers and booleans in template text, and `() => void f()` style
    // arrow shorthands.
    files: ['**/*.ts'],
    extends: [tseslint.configs.strictTypeChecked],
    rules: {
      '@typescript-eslint/restrict-template-expressions': [
        'error',
        { allowNumber: true, allowBoolean: true },
      ],
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
    },
  },
  {
    // @kubernetes/client-node declares its models (V1Pod, V1ObjectMeta, ...) as classes, but
    // every object it hands out or takes is plain JSON: a literal is the intended way to make one.
    files: ['services/kube-bridge/**/*.ts', 'services/nats-auth/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-class-instance-assignment': 'off',
      '@typescript-eslint/no-misused-spread': 'off',
    },
  },
);
