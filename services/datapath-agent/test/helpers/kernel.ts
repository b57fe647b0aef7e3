import { join } from 'node:path';
import { kernelSkipReason as gate } from '@dyad/testbed';
import { REPO_ROOT } from './build.ts';

export { kernelRequired } from '@dyad/testbed';

/** Why the agent's kernel tests cannot run here, or undefined when they can. */
export function kernelSkipReason(): string | undefined {
  return gate({
    notRoot: 'kernel tests need root (netns, veth, tc, bpf)',
    tools: ['ip', 'nsenter', 'flock', 'clang', 'make', 'cc'],
    pinned: ['cnitool', 'nats-server'],
    toolsBinDir: join(REPO_ROOT, 'tools', 'bin'),
  });
}
