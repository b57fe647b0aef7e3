// The lab's kubelet mode rebuilds the images when what goes into them changed: a lab started after
// a change must run that change, not the archives of an earlier build.
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IMAGES_FILE, staleImages } from '../images/images-file.ts';

let repo = '';
let images = '';
const BUILT = new Date('2026-01-02T00:00:00Z');
const BEFORE = new Date('2026-01-01T00:00:00Z');
const AFTER = new Date('2026-01-03T00:00:00Z');

function file(path: string, when: Date): string {
  const full = join(repo, path);
  mkdirSync(join(full, '..'), { recursive: true });
  writeFileSync(full, 'x');
  utimesSync(full, when, when);
  return full;
}

beforeEach(() => {
  repo = mkdtempSync(join(tmpdir(), 'dyad-stale-'));
  images = join(repo, '.images');
  file('package-lock.json', BEFORE);
  file('services/ipam/dist/index.js', BEFORE);
  file('packages/bus/dist/connect.js', BEFORE);
  file('bpf/build/datapath.o', BEFORE);
});
afterEach(() => rmSync(repo, { recursive: true, force: true }));

describe('staleImages', () => {
  it('says so when there are no images', async () => {
    expect(await staleImages(repo, images)).toMatch(/no images\.json/);
  });

  it('is undefined while every input is older than the build', async () => {
    file(`.images/${IMAGES_FILE}`, BUILT);
    expect(await staleImages(repo, images)).toBeUndefined();
  });

  it('names a compiled file, a new workspace file or the datapath object changed after it', async () => {
    file(`.images/${IMAGES_FILE}`, BUILT);
    const changed = file('packages/bus/dist/connect.js', AFTER);
    expect(await staleImages(repo, images)).toContain(changed);
    file('packages/bus/dist/connect.js', BEFORE);
    const added = file('services/nats-auth/dist/main.js', AFTER);
    expect(await staleImages(repo, images)).toContain(added);
    rmSync(added);
    const object = file('bpf/build/datapath.o', AFTER);
    expect(await staleImages(repo, images)).toContain(object);
  });
});
