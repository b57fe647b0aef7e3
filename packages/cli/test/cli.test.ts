import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { Command } from '../src/index.ts';
import { Exit, formatTable, outputFormat, run } from '../src/index.ts';

function io() {
  const out = new PassThrough();
  const err = new PassThrough();
  const text = (s: PassThrough) => (s.read() as Buffer | null)?.toString() ?? '';
  return { io: { stdout: out, stderr: err, env: {} }, out: () => text(out), err: () => text(err) };
}

const seen: string[][] = [];
const commands: Command[] = [
  { words: ['bpf'], summary: 'x', run: async () => 7 },
  { words: ['bpf', 'endpoint', 'list'], summary: 'y', run: async (c) => (seen.push([...c.args]), Exit.ok) },
  { words: ['boom'], summary: 'z', run: async () => { throw new Error('kaboom'); } },
];

describe('dyad dispatch', () => {
  it('picks the longest matching command and passes the rest as args', async () => {
    const t = io();
    expect(await run(['bpf', 'endpoint', 'list', '-o', 'json'], t.io, commands)).toBe(0);
    expect(seen.at(-1)).toEqual(['-o', 'json']);
    expect(await run(['bpf', 'other'], t.io, commands)).toBe(7);
  });
  it('an unknown command is a usage error listing the commands', async () => {
    const t = io();
    expect(await run(['nope'], t.io, commands)).toBe(Exit.usage);
    expect(t.err()).toContain('dyad bpf endpoint list');
  });
  it('a failing command exits 1 with its message', async () => {
    const t = io();
    expect(await run(['boom'], t.io, commands)).toBe(Exit.failed);
    expect(t.err()).toContain('kaboom');
  });
});

describe('output helpers', () => {
  it('aligns columns', () => {
    expect(formatTable(['ID', 'IPV4'], [['1', '198.18.0.1'], ['200', '-']])).toBe('ID   IPV4\n1    198.18.0.1\n200  -\n');
  });
  it('reads -o json in its spellings and refuses unknown formats', () => {
    expect(outputFormat(['-o', 'json'])).toBe('json');
    expect(outputFormat(['--output=json'])).toBe('json');
    expect(outputFormat(['-ojson'])).toBe('json');
    expect(outputFormat([])).toBe('table');
    expect(outputFormat(['-o', 'yaml'])).toEqual({ error: expect.stringContaining('yaml') });
  });
});
