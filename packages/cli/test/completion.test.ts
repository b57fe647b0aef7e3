// `dyad completion bash|zsh`: the scripts run in the real shells, with the words a user typed,
// and must offer the commands, flags and flag values of the command tree (a plugin's included).
import { spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { Exit, defineCommand, run } from '../src/index.ts';
import type { Plugin } from '../src/index.ts';

const lab: Plugin = {
  name: '@dyad/lab',
  commands: [
    defineCommand({
      words: ['lab', 'probe'],
      summary: 'probe',
      flags: { port: { type: 'string', value: 'P', description: 'port' } },
      run: () => Promise.resolve(Exit.ok),
    }),
  ],
};

async function script(shell: 'bash' | 'zsh'): Promise<string> {
  let text = '';
  const stdout = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  const code = await run(
    ['completion', shell],
    { stdout, stderr: stdout, env: {} },
    {
      plugins: () => Promise.resolve([lab]),
    },
  );
  expect(code).toBe(Exit.ok);
  return text;
}

function hasShell(shell: string): boolean {
  return spawnSync(shell, ['-c', 'true']).status === 0;
}

/** What bash offers for `words`, the last being the one under the cursor. */
function bash(src: string, words: readonly string[]): string[] {
  const quoted = words.map((w) => `'${w}'`).join(' ');
  const r = spawnSync(
    'bash',
    [
      '-c',
      `${src}\nCOMP_WORDS=(${quoted}); COMP_CWORD=${words.length - 1}; _dyad; printf '%s\\n' "\${COMPREPLY[@]}"`,
    ],
    { encoding: 'utf8' },
  );
  expect(r.stderr).toBe('');
  return r.stdout.split('\n').filter((l) => l !== '');
}

/** What zsh offers: its completion function, with compadd (filtering by $PREFIX, as zsh's does) and _files stood in for. */
function zsh(src: string, words: readonly string[]): string[] {
  const quoted = words.map((w) => `'${w}'`).join(' ');
  const stubs = `compadd() { [[ "$1" == -- ]] && shift; local c; for c in "$@"; do [[ "$c" == "$PREFIX"* ]] && print -- "$c"; done; return 0; }\n_files() { print -- '<files>'; }\ncompdef() { :; }`;
  const r = spawnSync(
    'zsh',
    [
      '-f',
      '-c',
      `${stubs}\n${src}\nwords=(${quoted}); CURRENT=${words.length}; PREFIX="\${words[CURRENT]}"; _dyad`,
    ],
    { encoding: 'utf8' },
  );
  expect(r.stderr).toBe('');
  return r.stdout.split('\n').filter((l) => l !== '');
}

const cases: Array<[string[], string[]]> = [
  [
    ['dyad', ''],
    [
      'bpf',
      'completion',
      'endpoint',
      'help',
      'identity',
      'ipam',
      'lab',
      'monitor',
      'observe',
      'policy',
      'service',
      'status',
      'uninstall',
      'version',
    ],
  ],
  [['dyad', 'b'], ['bpf']],
  [
    ['dyad', 'bpf', ''],
    ['ct', 'endpoint', 'ipcache', 'lb'],
  ],
  [
    ['dyad', 'bpf', 'ct', 'list', '--'],
    ['--agent-socket', '--help', '--node', '--output'],
  ],
  // flags and their values before the cursor are not command words
  [['dyad', 'status', '-o', 'json', '--node', 'n1', '--a'], ['--agent-socket']],
  [
    ['dyad', 'status', '-o', ''],
    ['json', 'table', 'wide', 'yaml'],
  ],
  [
    ['dyad', 'completion', ''],
    ['bash', 'zsh'],
  ],
  [['dyad', 'lab', ''], ['probe']],
  [['dyad', 'lab', 'probe', '--p'], ['--port']],
];

describe.skipIf(!hasShell('bash'))('bash completion', () => {
  it.each(cases)('%j offers %j', async (words, want) => {
    expect(bash(await script('bash'), words).sort()).toEqual(want);
  });
  it('offers files for a PATH flag', async () => {
    expect(bash(await script('bash'), ['dyad', 'status', '--agent-socket', '/'])).toContain('/tmp');
  });
});

describe.skipIf(!hasShell('zsh'))('zsh completion', () => {
  it.each(cases)('%j offers %j', async (words, want) => {
    expect(zsh(await script('zsh'), words).sort()).toEqual(want);
  });
  it('offers files for a PATH flag', async () => {
    expect(zsh(await script('zsh'), ['dyad', 'status', '--socket', ''])).toEqual(['<files>']);
  });
});
