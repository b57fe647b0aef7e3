// The CLI's boundaries and documentation, checked from the files: every import it makes is
// declared, it never names a harness, its plugin list is its optional peers, and the README's
// command tables list exactly what `dyad --help` lists.
import { readFileSync, readdirSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { PLUGIN_PACKAGES, run } from '../src/index.ts';

const PKG = fileURLToPath(new URL('../', import.meta.url));
const REPO = join(PKG, '..', '..');

interface Manifest {
  readonly name: string;
  readonly dependencies?: Record<string, string>;
  readonly peerDependencies?: Record<string, string>;
  readonly peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}
const manifest = JSON.parse(readFileSync(join(PKG, 'package.json'), 'utf8')) as Manifest;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && /\.(ts|js)$/.test(e.name))
    .map((e) => join(e.parentPath, e.name));
}

/** Every module specifier in static imports, re-exports and literal dynamic imports. */
function specifiers(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\s)(?:import|export)\s[^'"]*?from\s+'([^']+)'/gm))
    out.push(m[1] ?? '');
  for (const m of text.matchAll(/(?:^|\s)import\s+'([^']+)'/gm)) out.push(m[1] ?? '');
  for (const m of text.matchAll(/import\(\s*'([^']+)'\s*\)/g)) out.push(m[1] ?? '');
  return out;
}

/** `@scope/name/sub` → `@scope/name`; `name/sub` → `name`. */
function packageOf(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? spec);
}

describe('@dyad/cli boundaries', () => {
  const files = [...sources(join(PKG, 'src')), ...sources(join(PKG, 'bin'))];
  const bare = files.flatMap((f) =>
    specifiers(readFileSync(f, 'utf8'))
      .filter((s) => !s.startsWith('.') && !s.startsWith('node:') && !builtinModules.includes(s))
      .map((s) => ({ file: f.slice(PKG.length), pkg: packageOf(s) })),
  );

  it('finds the imports it checks (the scan itself works)', () => {
    expect(bare.map((b) => b.pkg)).toContain('@dyad/contracts');
    expect(bare.map((b) => b.pkg)).toContain('@dyad/bus');
  });

  it('imports only what package.json declares as dependencies', () => {
    // the package's own name resolves to itself (the bin picks src/ or dist/ by condition)
    const declared = new Set([manifest.name, ...Object.keys(manifest.dependencies ?? {})]);
    expect(bare.filter((b) => !declared.has(b.pkg))).toEqual([]);
  });

  it('depends on no harness and on nothing beyond contracts, bus, netaddr and telemetry', () => {
    expect(Object.keys(manifest.dependencies ?? {}).sort()).toEqual([
      '@dyad/bus',
      '@dyad/contracts',
      '@dyad/netaddr',
      '@dyad/telemetry',
    ]);
    // The lab is named once, as data (PLUGIN_PACKAGES), and imported by no module.
    expect(bare.filter((b) => b.pkg === '@dyad/lab' || b.pkg === '@dyad/testbed')).toEqual([]);
  });

  it('its plugins are exactly its optional peer dependencies', () => {
    const optional = Object.entries(manifest.peerDependenciesMeta ?? {})
      .filter(([, m]) => m.optional === true)
      .map(([name]) => name);
    expect([...PLUGIN_PACKAGES].sort()).toEqual(optional.sort());
    expect(Object.keys(manifest.peerDependencies ?? {}).sort()).toEqual(optional.sort());
  });
});

/** `a b|c` → `a b`, `a c`: choices are spelled alike in the README and in help. */
function expand(words: readonly string[]): string[] {
  const last = words.at(-1);
  if (last === undefined) return [];
  const head = words.slice(0, -1).join(' ');
  return last.split('|').map((w) => (head === '' ? w : `${head} ${w}`));
}

/** The commands of the README's tables: rows whose first cell is `npx dyad <words> …`. */
function readmeCommands(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/^\| `npx dyad ([^`]*)`/gm)) {
    const words: string[] = [];
    for (const t of (m[1] ?? '').replaceAll('\\|', '|').split(/\s+/)) {
      if (!/^[a-z][a-z|]*$/.test(t)) break;
      words.push(t);
    }
    out.push(...expand(words));
  }
  return out;
}

/** The commands `dyad --help` lists (built-in and the installed plugins'). */
async function helpCommands(): Promise<string[]> {
  let text = '';
  const stdout = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  expect(await run(['--help'], { stdout, stderr: stdout, env: {} })).toBe(0);
  const out: string[] = [];
  let inList = false;
  for (const line of text.split('\n')) {
    if (/^Commands( from \S+)?:$/.test(line)) inList = true;
    else if (line === '') inList = false;
    else if (inList) {
      // a wrapped summary continues on a line that starts with spaces only: no command there
      const m = /^ {2}(\S+(?: \S+)*?) {2,}/.exec(line);
      if (m?.[1] !== undefined) out.push(...expand(m[1].split(' ')));
    }
  }
  return out;
}

describe('the README', () => {
  it("lists in its tables exactly the commands of `dyad --help` (the lab's plugin included)", async () => {
    const readme = new Set(readmeCommands(readFileSync(join(REPO, 'README.md'), 'utf8')));
    const help = new Set(await helpCommands());
    expect(help).toContain('lab probe');
    expect([...readme].sort()).toEqual([...help].sort());
  });
});
