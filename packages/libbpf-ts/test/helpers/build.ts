import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
export const BPF_DIR = join(REPO_ROOT, 'bpf');
export const DATAPATH_OBJECT = join(BPF_DIR, 'build', 'datapath.o');
export const LAYOUTS_OBJECT = join(BPF_DIR, 'build', 'layouts.o');

/** Runs `make -C bpf` (a no-op when fresh). flock serialises test files building at once. */
export function ensureBpfBuilt(): void {
  execFileSync('flock', ['/tmp/dyad-bpf-build.lock', 'make', '-s', '-C', BPF_DIR], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}
