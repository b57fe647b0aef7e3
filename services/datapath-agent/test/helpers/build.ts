import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
export const CNI_DIR = join(REPO_ROOT, 'cni');
/** The directory holding dyad-cni: what CNI_PATH points at. */
export const CNI_BIN_DIR = join(CNI_DIR, 'build');
export const DYAD_CNI = join(CNI_BIN_DIR, 'dyad-cni');
export const DATAPATH_OBJECT = join(REPO_ROOT, 'bpf', 'build', 'datapath.o');

/** Why dyad-cni cannot be built here, or undefined. */
export function buildSkipReason(): string | undefined {
  for (const tool of ['make', 'cc', 'flock']) {
    try {
      execFileSync('which', [tool], { stdio: 'ignore' });
    } catch {
      return `${tool} is not installed (dyad-cni is built with make and a C compiler)`;
    }
  }
  return undefined;
}

/** `make -C cni` (a no-op when fresh); flock keeps parallel test files from building at once. */
export function ensureCniBuilt(): void {
  execFileSync('flock', ['/tmp/dyad-cni-build.lock', 'make', '-s', '-C', CNI_DIR], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

/** `make -C bpf`. */
export function ensureBpfBuilt(): void {
  execFileSync('flock', ['/tmp/dyad-bpf-build.lock', 'make', '-s', '-C', join(REPO_ROOT, 'bpf')], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}
