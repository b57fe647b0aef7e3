import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './build.ts';

/** Why the agent's kernel tests cannot run here, or undefined when they can. */
export function kernelSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'kernel tests need root (netns, veth, tc, bpf)';
  if (!existsSync('/sys/fs/bpf')) return 'bpffs is not mounted at /sys/fs/bpf';
  for (const tool of ['ip', 'nsenter', 'flock', 'clang', 'make', 'cc']) {
    try {
      execFileSync('which', [tool], { stdio: 'ignore' });
    } catch {
      return `${tool} is not installed`;
    }
  }
  for (const bin of ['cnitool', 'nats-server']) {
    try {
      accessSync(join(REPO_ROOT, 'tools', 'bin', bin), constants.X_OK);
    } catch {
      return `tools/bin/${bin} is missing (npm run tools)`;
    }
  }
  return undefined;
}

/** With DYAD_REQUIRE_KERNEL=1 a skip is a failure. */
export function kernelRequired(): boolean {
  return process.env.DYAD_REQUIRE_KERNEL === '1';
}
