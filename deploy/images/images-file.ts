// images.json, which `npm run images` writes beside the archives: what the lab imports and the
// tests read.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';

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
