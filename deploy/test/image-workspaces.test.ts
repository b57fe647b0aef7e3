// The image carries the workspaces deploy/images/workspaces.ts lists. A service whose @dyad/*
// dependency is not among them starts nowhere but in a cluster (ERR_MODULE_NOT_FOUND), as with
// @dyad/service once: every service but the agent crash-looped after `helm install`.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '@dyad/testbed';
import { IMAGE_WORKSPACES } from '../images/workspaces.ts';

interface Manifest {
  name: string;
  dependencies?: Record<string, string>;
}

const root = repoRoot();
const read = (dir: string): Manifest =>
  JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8')) as Manifest;

/** Every workspace directory of the repository by its package name. */
function workspaces(): Map<string, string> {
  const out = new Map<string, string>();
  for (const group of ['packages', 'services']) {
    for (const name of readdirSync(join(root, group))) {
      const dir = `${group}/${name}`;
      if (existsSync(join(root, dir, 'package.json'))) out.set(read(dir).name, dir);
    }
  }
  return out;
}

/** Workspaces reached from `from` through production `dependencies`, `from` included. */
function closure(from: readonly string[], byName: ReadonlyMap<string, string>): string[] {
  const todo = [...from];
  const seen = new Set<string>();
  for (let dir = todo.pop(); dir !== undefined; dir = todo.pop()) {
    if (seen.has(dir)) continue;
    seen.add(dir);
    for (const dep of Object.keys(read(dir).dependencies ?? {})) {
      const d = byName.get(dep);
      if (d !== undefined) todo.push(d);
    }
  }
  return [...seen].sort();
}

describe('the image workspaces', () => {
  const services = IMAGE_WORKSPACES.filter((w) => w.startsWith('services/'));

  it('are every service and every workspace a service or the CLI needs at run time', () => {
    expect(services).toHaveLength(
      readdirSync(join(root, 'services')).filter((s) =>
        existsSync(join(root, 'services', s, 'package.json')),
      ).length,
    );
    const needed = closure([...services, 'packages/cli'], workspaces());
    expect(needed.filter((d) => !(IMAGE_WORKSPACES as readonly string[]).includes(d))).toEqual([]);
  });

  it('would catch a missing one (@dyad/service, needed by ipam)', () => {
    const needed = closure(['services/ipam'], workspaces());
    expect(needed).toContain('packages/service');
  });
});
