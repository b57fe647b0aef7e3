import { kernelSkipReason as gate } from '@dyad/testbed';

export { kernelRequired } from '@dyad/testbed';

/** Why kernel tests cannot run here, or undefined when they can. */
export function kernelSkipReason(): string | undefined {
  return gate({
    notRoot: 'kernel tests need root (netns, tc, bpf)',
    tools: ['ip', 'nsenter', 'flock', 'clang', 'make'],
  });
}
