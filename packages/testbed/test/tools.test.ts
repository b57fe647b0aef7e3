import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TOOL_NAMES, ToolMissingError, toolPath } from '../src/index.ts';

describe('toolPath', () => {
  it('tells the user to run `npm run tools` when a binary is missing', () => {
    const empty = mkdtempSync(join(tmpdir(), 'dyad-nobin-'));
    try {
      expect(() => toolPath('kube-apiserver', empty)).toThrow(ToolMissingError);
      expect(() => toolPath('kube-apiserver', empty)).toThrow(
        /kube-apiserver not found .*npm run tools/,
      );
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  // Fails (never skips) on a machine where tools/build.sh has not run, with the hint to run it.
  it.each(TOOL_NAMES)('finds the built %s in tools/bin', (name) => {
    expect(toolPath(name)).toMatch(new RegExp(`/tools/bin/${name}$`));
  });
});
