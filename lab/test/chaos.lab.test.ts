// `npm run chaos -- --profile short` as CI runs it: a lab of its own, every fault once, and not
// one invariant violated afterwards. The suite's figures are printed for the log.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it, test } from 'vitest';
import { REPO, labRequired, labSkipReason } from './helpers.ts';

const skip = labSkipReason();
if (skip && labRequired()) test('lab tier is required', () => expect.fail(skip));

interface ChaosSummary {
  profile: string;
  faults: Array<{ fault: string; attempted: number; failed: number; violations: number }>;
  violations: number;
}

describe.skipIf(skip !== undefined)('chaos, short profile', () => {
  it('every fault heals with 0 invariant violations, and the last line says so as JSON', async () => {
    const child = spawn(
      process.execPath,
      [
        join(REPO, 'lab', 'src', 'chaos', 'main.ts'),
        '--profile',
        'short',
        '--lab-dir',
        join(REPO, '.lab', 'test-chaos'),
      ],
      { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    process.stdout.write(out);
    if (code !== 0) process.stderr.write(err.slice(-4000));
    const lines = out.trim().split('\n');
    const summary = JSON.parse(lines[lines.length - 1] ?? '{}') as ChaosSummary;
    expect(summary.profile).toBe('short');
    // the baseline and the 15 faults
    expect(summary.faults.map((f) => f.fault)).toHaveLength(16);
    expect(
      summary.faults.filter((f) => f.violations > 0),
      out + err.slice(-2000),
    ).toEqual([]);
    expect(summary.violations).toBe(0);
    expect(summary.faults.reduce((a, f) => a + f.failed, 0)).toBe(0);
    expect(code).toBe(0);
  });
});
