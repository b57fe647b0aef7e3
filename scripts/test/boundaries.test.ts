// Package boundaries, checked on every import of every TypeScript file in the workspace:
// - a relative import stays inside its own package (another package is reached by its name,
//   through its public door: `exports` in its package.json);
// - a bare import is declared in the importing package's package.json (dependencies, or
//   devDependencies for tests, benches and scripts, which may also use the workspace's test
//   runner, declared once at the root);
// - product code (a package's src/) never imports the test bed or the lab;
// - only @dyad/bus touches NATS: no other package's src/ imports the nats.js client. Tests and
//   benches may, to do what the bus exists to refuse (send malformed bytes or raw headers to
//   check the dead letters, read a stream as its operator would, load the server directly).
// The root's bench/ and scripts/ count as one package: the root package.json.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const HARNESSES = new Set(['@dyad/testbed', '@dyad/lab']);
const BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

interface Pkg {
  readonly dir: string;
  readonly name: string;
  readonly deps: ReadonlySet<string>;
  readonly devDeps: ReadonlySet<string>;
}

function readPkg(dir: string): Pkg {
  const j = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
    name: string;
    dependencies?: Record<string, string>;
    devDependencies?: Record<string, string>;
  };
  return {
    dir,
    name: j.name,
    deps: new Set(Object.keys(j.dependencies ?? {})),
    devDeps: new Set(Object.keys(j.devDependencies ?? {})),
  };
}

function packages(): Pkg[] {
  const out = [readPkg(ROOT)];
  for (const group of ['packages', 'services'])
    for (const d of readdirSync(join(ROOT, group))) out.push(readPkg(join(ROOT, group, d)));
  out.push(readPkg(join(ROOT, 'lab')));
  return out;
}

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    if (e === 'node_modules' || e.startsWith('.')) continue;
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (e.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** The specifiers a file imports (static, dynamic, re-exports), type-only ones included. */
function importsOf(text: string): string[] {
  const out: string[] = [];
  const re =
    /(?:^|[^.\w])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;
  for (const m of text.matchAll(re)) out.push(m[1] ?? m[2] ?? m[3] ?? '');
  return out.filter((s) => s !== '');
}

/** The bare package a specifier names: `@scope/name` or `name` (a door such as `/testing` is the package's). */
function packageOf(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? `${parts[0]}/${parts[1]}` : (parts[0] ?? spec);
}

/** Which package a file belongs to: the deepest package directory holding it. */
function owner(all: readonly Pkg[], file: string): Pkg {
  let best: Pkg | undefined;
  for (const p of all)
    if (file.startsWith(p.dir + sep) && (!best || p.dir.length > best.dir.length)) best = p;
  if (!best) throw new Error(`no package holds ${file}`);
  return best;
}

function violations(): string[] {
  const all = packages();
  // the workspace's test runner serves the tests of every package (declared once, at the root)
  const tools = new Set(['vitest']);
  const problems: string[] = [];
  const roots = [
    ...all.filter((p) => p.dir !== ROOT).map((p) => p.dir),
    join(ROOT, 'bench'),
    join(ROOT, 'scripts'),
  ];
  for (const root of roots) {
    for (const file of tsFiles(root)) {
      const pkg = owner(all, file);
      const where = relative(ROOT, file);
      const inSrc = relative(pkg.dir, file).split(sep)[0] === 'src';
      for (const spec of importsOf(readFileSync(file, 'utf8'))) {
        if (spec.startsWith('.')) {
          const target = resolve(dirname(file), spec);
          if (owner(all, target) !== pkg)
            problems.push(
              `${where}: ${spec} reaches into ${relative(ROOT, owner(all, target).dir)}`,
            );
          continue;
        }
        if (BUILTINS.has(spec) || spec.startsWith('node:')) continue;
        const name = packageOf(spec);
        if (name === pkg.name) continue;
        if (inSrc && HARNESSES.has(name) && pkg.name !== '@dyad/lab')
          problems.push(`${where}: product code imports the harness ${name}`);
        // @nats-io/nkeys is key material (ed25519), not the client: test beds mint identities with it
        if (
          inSrc &&
          name.startsWith('@nats-io/') &&
          name !== '@nats-io/nkeys' &&
          pkg.name !== '@dyad/bus'
        )
          problems.push(`${where}: imports ${name}; only @dyad/bus touches NATS`);
        const declared =
          pkg.deps.has(name) || (!inSrc && (pkg.devDeps.has(name) || tools.has(name)));
        if (!declared)
          problems.push(
            `${where}: ${name} is not declared in ${relative(ROOT, pkg.dir) || '.'}/package.json`,
          );
      }
    }
  }
  return problems;
}

describe('package boundaries', () => {
  it('every import stays in its package or names a declared dependency; src/ never imports a harness', () => {
    expect(violations()).toEqual([]);
  });

  it('finds the imports it checks (a check that saw nothing would pass)', () => {
    expect(
      importsOf(
        "import { a } from './x.ts';\nexport { b } from '@dyad/bus';\nconst m = await import('koffi');",
      ),
    ).toEqual(['./x.ts', '@dyad/bus', 'koffi']);
    expect(importsOf("import type { T } from '../y.ts';\nimport 'side-effect';")).toEqual([
      '../y.ts',
      'side-effect',
    ]);
  });
});
