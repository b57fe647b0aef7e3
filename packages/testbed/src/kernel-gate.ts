// The gate in front of kernel-tier tests: they skip with a stated reason where the machine cannot
// run them, and DYAD_REQUIRE_KERNEL=1 turns that skip into a failure so CI cannot pass vacuously.
import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { join } from 'node:path';
import { defaultToolsBinDir } from './tools.ts';

export type KernelGateOptions = {
  /** The reason given when not root, naming what the tier needs root for. */
  notRoot: string;
  /** Programs that must be on PATH. */
  tools?: readonly string[];
  /** Pinned binaries that must be executable in `toolsBinDir` (fetched by `npm run tools`). */
  pinned?: readonly string[];
  /** Where the pinned binaries live; defaults to `<repo>/tools/bin`. */
  toolsBinDir?: string;
};

/** Why the tier cannot run here (the first missing need), or undefined when it can. */
export function kernelSkipReason(options: KernelGateOptions): string | undefined {
  if (process.getuid?.() !== 0) return options.notRoot;
  if (!existsSync('/sys/fs/bpf')) return 'bpffs is not mounted at /sys/fs/bpf';
  for (const tool of options.tools ?? []) {
    try {
      execFileSync('which', [tool], { stdio: 'ignore' });
    } catch {
      return `${tool} is not installed`;
    }
  }
  const binDir = options.toolsBinDir ?? defaultToolsBinDir();
  for (const bin of options.pinned ?? []) {
    try {
      accessSync(join(binDir, bin), constants.X_OK);
    } catch {
      return `tools/bin/${bin} is missing (npm run tools)`;
    }
  }
  return undefined;
}

/** With DYAD_REQUIRE_KERNEL=1 a skip is a failure: the caller registers a failing test instead. */
export function kernelRequired(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.DYAD_REQUIRE_KERNEL === '1';
}
