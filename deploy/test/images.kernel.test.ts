// `npm run images`, end to end: builds the three archives into a temporary directory, reads each
// back as an OCI image layout (index, manifest and config valid; every blob's digest and size
// right; every diff_id the sha256 of its layer's tar), checks that what the chart and containerd
// start is in the layers, then imports them into a real containerd from Debian (its own root,
// state and socket) with `ctr images import` and runs the entrypoints. Root only (containerd);
// skipped with the reason otherwise, failing when DYAD_REQUIRE_KERNEL=1.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it, test } from 'vitest';
import { parse } from 'yaml';
import {
  kernelRequired,
  kernelSkipReason,
  keepFromEnv,
  makeTempDir,
  removeTempDir,
  repoRoot,
  spawnLogged,
  waitUntilReady,
} from '@dyad/testbed';
import type { ManagedProcess } from '@dyad/testbed';
import { readImagesFile, type ImagesFile } from '../images/images-file.ts';
import { blobPath } from '../images/layer.ts';
import {
  ANNOTATION_IMAGE_NAME,
  ImageConfig,
  Index,
  Manifest,
  OCI_LAYOUT,
  type Descriptor,
} from '../images/oci.ts';

const exec = promisify(execFile);

const skip = kernelSkipReason({
  notRoot: 'the image test needs root (containerd, apt-get download)',
  tools: ['containerd', 'ctr', 'runc', 'tar', 'apt-get', 'dpkg-deb'],
  pinned: ['nats-server'],
});
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

const repo = repoRoot();
const values = parse(readFileSync(join(repo, 'deploy', 'values.yaml'), 'utf8')) as {
  image: { cniBinary: string; workingDir: string; entry: string };
};
const SERVICES = [
  'bootstrap',
  'datapath-agent',
  'ipam',
  'kube-bridge',
  'router',
  'policy',
  'nats-auth',
];

/** Paths (relative to the image root) that the chart or the runtime executes or reads. */
const MUST_HAVE: Record<string, readonly string[]> = {
  dyad: [
    'usr/local/bin/node',
    'bin/sh',
    // The init containers' commands (deploy/templates): cp, mv, chmod, mkdir, stat.
    ...['cp', 'mv', 'chmod', 'mkdir', 'stat'].map((c) => `bin/${c}`),
    values.image.cniBinary.slice(1),
    `${values.image.workingDir.slice(1)}/bpf/build/datapath.o`,
    ...SERVICES.map(
      (s) => `${values.image.workingDir.slice(1)}/${values.image.entry.replace('%s', s)}`,
    ),
    'usr/lib/x86_64-linux-gnu/libbpf.so.1',
  ],
  'dyad-nats': ['usr/local/bin/nats-server'],
  'dyad-pause': ['pause'],
};

function digestOf(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function shortName(name: string): string {
  const last = name.slice(name.lastIndexOf('/') + 1);
  return last.slice(0, last.indexOf(':'));
}

describe.skipIf(skip !== undefined)('npm run images', () => {
  const keep = keepFromEnv();
  let dir = '';
  let built: ImagesFile;
  let containerd: ManagedProcess | undefined;
  let socket = '';

  beforeAll(async () => {
    dir = makeTempDir('dyad-images-', keep);
    await exec('node', [join(repo, 'deploy', 'images', 'build.ts')], {
      env: { ...process.env, DYAD_IMAGES_DIR: join(dir, 'out') },
      maxBuffer: 16 * 1024 * 1024,
    });
    built = await readImagesFile(join(dir, 'out'));
  });

  afterAll(async () => {
    await containerd?.stop();
    if (dir !== '') removeTempDir(dir, keep);
  });

  it('writes the three images and records their sizes', () => {
    expect(built.images.map((i) => shortName(i.name)).sort()).toEqual([
      'dyad',
      'dyad-nats',
      'dyad-pause',
    ]);
    for (const image of built.images) expect(image.archiveBytes).toBeGreaterThan(0);
    expect(built.debian.map((d) => d.name)).toContain('busybox-static');
  });

  it('archives are OCI image layouts whose documents and blobs agree', async () => {
    for (const image of built.images) {
      const layout = join(dir, 'layouts', shortName(image.name));
      mkdirSync(layout, { recursive: true });
      await exec('tar', ['-xf', join(dir, 'out', image.archive), '-C', layout]);
      expect(readFileSync(join(layout, 'oci-layout'), 'utf8')).toBe(OCI_LAYOUT);
      const readBlob = (d: Descriptor): Buffer => {
        const bytes = readFileSync(blobPath(layout, d.digest));
        expect(bytes.length, `${image.name} ${d.digest} size`).toBe(d.size);
        expect(digestOf(bytes), `${image.name} blob digest`).toBe(d.digest);
        return bytes;
      };
      const index = Index.parse(JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')));
      expect(index.manifests).toHaveLength(1);
      const entry = index.manifests[0];
      if (entry === undefined) throw new Error(`${image.name}: empty index`);
      expect(entry.annotations?.[ANNOTATION_IMAGE_NAME]).toBe(image.name);
      const manifest = Manifest.parse(JSON.parse(readBlob(entry).toString()));
      const config = ImageConfig.parse(JSON.parse(readBlob(manifest.config).toString()));
      expect(config.rootfs.diff_ids).toHaveLength(manifest.layers.length);
      const paths = new Set<string>();
      for (const [i, layer] of manifest.layers.entries()) {
        const tar = gunzipSync(readBlob(layer));
        expect(digestOf(tar), `${image.name} layer ${i} diff_id`).toBe(config.rootfs.diff_ids[i]);
        const listing = join(layout, `layer-${i}.tar`);
        writeFileSync(listing, tar);
        const { stdout } = await exec('tar', ['-tf', listing], { maxBuffer: 64 * 1024 * 1024 });
        for (const p of stdout.split('\n')) paths.add(p.replace(/^\.\//, '').replace(/\/$/, ''));
      }
      for (const path of MUST_HAVE[shortName(image.name)] ?? []) {
        expect(paths.has(path), `${image.name} has ${path}`).toBe(true);
      }
    }
  });

  describe('containerd', () => {
    const ctr = (...args: string[]) =>
      exec('ctr', ['--address', socket, '--namespace', 'k8s.io', ...args], {
        maxBuffer: 16 * 1024 * 1024,
      });

    beforeAll(async () => {
      const root = join(dir, 'containerd');
      mkdirSync(root, { recursive: true });
      socket = join(root, 'containerd.sock');
      const config = join(root, 'config.toml');
      writeFileSync(
        config,
        [
          'version = 2',
          `root = "${root}/root"`,
          `state = "${root}/state"`,
          '[grpc]',
          `  address = "${socket}"`,
          '[plugins."io.containerd.grpc.v1.cri"]',
          '  disable_tcp_service = true',
          '',
        ].join('\n'),
      );
      containerd = spawnLogged({
        name: 'containerd',
        command: 'containerd',
        args: ['--config', config],
        logPath: join(root, 'containerd.log'),
      });
      await waitUntilReady(containerd, async () => {
        try {
          await ctr('version');
          return true;
        } catch {
          return 'no answer on its socket yet';
        }
      });
    });

    it('`ctr images import` accepts every archive under the name the chart uses', async () => {
      for (const image of built.images)
        await ctr('images', 'import', join(dir, 'out', image.archive));
      const { stdout } = await ctr('images', 'ls', '-q');
      for (const image of built.images) expect(stdout.split('\n')).toContain(image.name);
    });

    it('the imported images run: node with libbpf and the contracts, nats-server, the pause', async () => {
      const name = (short: string): string => {
        const image = built.images.find((i) => shortName(i.name) === short);
        if (image === undefined) throw new Error(`no ${short} image was built`);
        return image.name;
      };
      const { stdout: nodeOut } = await ctr(
        'run',
        '--rm',
        name('dyad'),
        `dyad-img-node-${process.pid}`,
        'node',
        '-e',
        [
          "const koffi = (await import('koffi')).default;",
          "koffi.load('libbpf.so.1');",
          "const c = await import('@dyad/contracts');",
          "console.log('ok', typeof c.DyadConfig);",
        ].join(' '),
      );
      expect(nodeOut.trim()).toBe('ok object');
      const { stdout: natsOut } = await ctr(
        'run',
        '--rm',
        name('dyad-nats'),
        `dyad-img-nats-${process.pid}`,
        'nats-server',
        '--version',
      );
      expect(natsOut).toMatch(/^nats-server: v\d+\.\d+\.\d+/);
      // catatonit -P answers --version without pausing; the test of its pause is the lab's sandboxes.
      const { stdout: pauseOut } = await ctr(
        'run',
        '--rm',
        name('dyad-pause'),
        `dyad-img-pause-${process.pid}`,
        '/pause',
        '--version',
      );
      expect(pauseOut).toMatch(/catatonit/i);
    });
  });
});
