// The lint rules that keep the address-family vocabulary one (eslint.config.js, FAMILY_COPIES)
// must fire on the copies they exist for, and stay quiet on the one definition's uses. Linted
// through the workspace's own config, as `eslint` runs it, on text placed at a real path.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
// A file the type-aware parser knows (it is in the project); its text is replaced by the sample.
const AT = join(ROOT, 'services', 'router', 'src', 'ip.ts');

const eslint = new ESLint({ cwd: ROOT });

async function familyFindings(text: string): Promise<string[]> {
  const [result] = await eslint.lintText(text, { filePath: AT });
  return (result?.messages ?? [])
    .filter((m) => m.ruleId === 'no-restricted-syntax')
    .map((m) => `${m.line}: ${m.message}`);
}

describe('the family vocabulary rule', () => {
  it.each([
    ['a union of the wire tags', "export type Fam = 'IPv4' | 'IPv6';\n"],
    ['one wire tag as a type', "export const f = (x: { family: 'IPv6' }) => x;\n"],
    ['a numeric family type', 'export type Fam = 4 | 6;\n'],
    [
      'a zod enum of the tags',
      "import { z } from 'zod';\nexport const F = z.enum(['IPv4', 'IPv6']);\n",
    ],
    ['a zod literal of a tag', "import { z } from 'zod';\nexport const F = z.literal('IPv4');\n"],
    ['a constant list of both', "export const BOTH = ['IPv4', 'IPv6'];\n"],
    ['an as-const list of both', "for (const f of ['IPv6', 'IPv4'] as const) console.log(f);\n"],
    ['a set of both', "export const S = new Set(['IPv4', 'IPv6']);\n"],
  ])('refuses %s', async (_what, text) => {
    const found = await familyFindings(text);
    expect(found.length, text).toBeGreaterThan(0);
    expect(found.join('\n')).toContain("'@dyad/netaddr'");
  });

  it('accepts the one vocabulary, data that merely names a family, and other numbers', async () => {
    const text = [
      "import { FAMILIES, Family, FamilyVersion } from '@dyad/netaddr';",
      'export const both: readonly Family[] = FAMILIES;',
      'export const first = (f: Family): boolean => f === Family.IPv4 && FamilyVersion[f] === 4;',
      "export const spec = { ipFamilies: ['IPv4', 'IPv6'] };",
      "export const tag = 'IPv6';",
      'export type Small = 4 | 8;',
      '',
    ].join('\n');
    expect(await familyFindings(text)).toEqual([]);
  });
});
