// images.json, which `npm run images` writes beside the archives: what the lab imports and the
// tests read.
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { IMAGE_WORKSPACES } from './workspaces.ts';

export const IMAGES_FILE = 'images.json';

export const BuiltImage = z.object({
  /** Full name, as containerd stores it after the import. */
  name: z.string(),
  /** File name in the images directory. */
  archive: z.string(),
  archiveBytes: z.number().int().positive(),
  layers: z.array(z.object({ createdBy: z.string(), gzipBytes: z.number().int().positive() })),
});
export type BuiltImage = z.infer<typeof BuiltImage>;

export const ImagesFile = z.object({
  node: z.string(),
  debian: z.array(z.object({ name: z.string(), version: z.string() })),
  images: z.array(BuiltImage),
});
export type ImagesFile = z.infer<typeof ImagesFile>;

export async function readImagesFile(dir: string): Promise<ImagesFile> {
  return ImagesFile.parse(JSON.parse(await readFile(join(dir, IMAGES_FILE), 'utf8')));
}

/** What goes into the images besides Debian's packages and Node (build.ts, projectTree). */
function imageInputs(repo: string): string[] {
  return [
    join(repo, 'package-lock.json'),
    join(repo, 'package.json'),
    join(repo, 'deploy', 'images'),
    join(repo, 'bpf', 'build', 'datapath.o'),
    join(repo, 'cni', 'build', 'dyad-cni'),
    ...IMAGE_WORKSPACES.flatMap((w) => [
      join(repo, w, 'package.json'),
      join(repo, w, 'bin'),
      join(repo, w, 'dist'),
    ]),
  ];
}

/** The first file under `path` modified after `since` (ms), if any; a missing path has none. */
async function newerFile(path: string, since: number): Promise<string | undefined> {
  const s = await stat(path).catch(() => undefined);
  if (s === undefined) return undefined;
  if (!s.isDirectory()) return s.mtimeMs > since ? path : undefined;
  for (const e of await readdir(path)) {
    const hit = await newerFile(join(path, e), since);
    if (hit !== undefined) return hit;
  }
  return undefined;
}

/**
 * Why the images in `dir` no longer show `repo`: an input (a dist/ file, the lock, the datapath
 * object, ...) changed after they were built, or there are none. Undefined when they are current.
 */
export async function staleImages(repo: string, dir: string): Promise<string | undefined> {
  const built = await stat(join(dir, IMAGES_FILE)).catch(() => undefined);
  if (built === undefined) return `no ${IMAGES_FILE} in ${dir}`;
  for (const input of imageInputs(repo)) {
    const hit = await newerFile(input, built.mtimeMs);
    if (hit !== undefined) return `${hit} changed after the images were built`;
  }
  return undefined;
}
