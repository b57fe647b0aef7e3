// Writes a directory as one gzip layer blob: GNU tar (sorted names, owner root, time zero, so the
// same tree gives the same digest) streamed through sha256 (the diff_id) and gzip into the blob
// store, named by the digest of the compressed bytes.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { Layer } from './oci.ts';

/** `tar` arguments that make the archive a function of the tree's content alone. */
export const REPRODUCIBLE_TAR = [
  '--sort=name',
  '--owner=0',
  '--group=0',
  '--numeric-owner',
  '--mtime=@0',
  '--format=posix',
  '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime',
];

function hashing(hash: ReturnType<typeof createHash>): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
}

/** The blob's path in an OCI layout (or the shared store) for a digest. */
export function blobPath(root: string, digest: string): string {
  return join(root, 'blobs', 'sha256', digest.slice('sha256:'.length));
}

export async function writeLayer(dir: string, store: string, createdBy: string): Promise<Layer> {
  await mkdir(join(store, 'blobs', 'sha256'), { recursive: true });
  const tmp = join(store, `layer-${process.pid}-${Date.now()}.tmp`);
  const tar = spawn('tar', [...REPRODUCIBLE_TAR, '-C', dir, '-cf', '-', '.'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  tar.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number>((resolve) => tar.on('close', (code) => resolve(code ?? 1)));
  const diff = createHash('sha256');
  const compressed = createHash('sha256');
  await pipeline(
    tar.stdout,
    hashing(diff),
    createGzip({ level: 6 }),
    hashing(compressed),
    createWriteStream(tmp),
  );
  const code = await exited;
  if (code !== 0) throw new Error(`tar of ${dir} failed (${code}): ${stderr.trim()}`);
  const digest = `sha256:${compressed.digest('hex')}`;
  const path = blobPath(store, digest);
  await rename(tmp, path);
  return {
    digest,
    size: (await stat(path)).size,
    diffId: `sha256:${diff.digest('hex')}`,
    createdBy,
  };
}
