import { accessSync, constants } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ToolMissingError } from './errors.ts';

/** Binaries built by tools/build.sh from the pins in tools/versions.env. */
export const TOOL_NAMES = [
  'etcd',
  'kube-apiserver',
  'kube-controller-manager',
  'kube-scheduler',
  'kubectl',
  'nats-server',
  'cnitool',
] as const;

export type ToolName = (typeof TOOL_NAMES)[number];

/** The repository root, found from this file's place in packages/testbed/src. */
export function repoRoot(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
}

export function defaultToolsBinDir(): string {
  return join(repoRoot(), 'tools', 'bin');
}

/**
 * Absolute path of a pinned binary in `<repo>/tools/bin` (or `binDir`). Throws ToolMissingError,
 * which tells the user to run `npm run tools`, when it is missing or not executable.
 */
export function toolPath(name: ToolName, binDir: string = defaultToolsBinDir()): string {
  const path = join(binDir, name);
  try {
    accessSync(path, constants.X_OK);
  } catch (cause) {
    throw new ToolMissingError(name, path, { cause });
  }
  return path;
}
