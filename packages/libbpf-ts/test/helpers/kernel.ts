import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Why kernel tests cannot run here, or undefined when they can. */
export function kernelSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'kernel tests need root (netns, tc, bpf)';
  if (!existsSync('/sys/fs/bpf')) return 'bpffs is not mounted at /sys/fs/bpf';
  for (const tool of ['ip', 'nsenter', 'flock', 'clang', 'make']) {
    try {
      execFileSync('which', [tool], { stdio: 'ignore' });
    } catch {
      return `${tool} is not installed`;
    }
  }
  return undefined;
}

/** With DYAD_REQUIRE_KERNEL=1 a skip is a failure: the caller registers a failing test. */
export function kernelRequired(): boolean {
  return process.env.DYAD_REQUIRE_KERNEL === '1';
}
