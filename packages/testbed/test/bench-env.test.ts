import { describe, expect, it } from 'vitest';
import { childPassThroughEnv } from '../src/index.ts';

describe('childPassThroughEnv', () => {
  it('hands on the coalescing switch and maps DYAD_CHILD_NODE_OPTIONS to NODE_OPTIONS', () => {
    expect(
      childPassThroughEnv({
        DYAD_NATS_COALESCE: '0',
        DYAD_CHILD_NODE_OPTIONS: '--cpu-prof',
        NODE_OPTIONS: '--inspect',
        HOME: '/root',
      }),
    ).toEqual({ DYAD_NATS_COALESCE: '0', NODE_OPTIONS: '--cpu-prof' });
  });

  it('hands on nothing when neither is set (not even the parent NODE_OPTIONS)', () => {
    expect(childPassThroughEnv({ NODE_OPTIONS: '--inspect', PATH: '/bin' })).toEqual({});
  });
});
