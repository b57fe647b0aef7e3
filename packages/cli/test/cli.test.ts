// The dispatcher, the one strict parser, help and output formats, with stand-in commands: no
// agent, no NATS, no plugins unless a test gives one.
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { Command, Plugin } from '../src/index.ts';
import { Exit, defineCommand, formatTable, run, toYaml } from '../src/index.ts';
import { COMMANDS } from '../src/registry.ts';

function io() {
  const out = new PassThrough();
  const err = new PassThrough();
  const text = (s: PassThrough) => (s.read() as Buffer | null)?.toString() ?? '';
  return { io: { stdout: out, stderr: err, env: {} }, out: () => text(out), err: () => text(err) };
}

const seen: Array<{ flags: unknown; positionals: readonly string[]; rest: readonly string[] }> = [];
const commands: Command[] = [
  defineCommand({
    words: ['bpf'],
    summary: 'x',
    flags: {},
    args: { usage: '[thing]', min: 0, max: 1 },
    run: () => Promise.resolve(7),
  }),
  defineCommand({
    words: ['bpf', 'endpoint', 'list'],
    summary: 'y',
    flags: {
      output: { type: 'string', short: 'o', description: 'o', choices: ['table', 'json'] },
      node: { type: 'string', description: 'n' },
      all: { type: 'boolean', description: 'a' },
    },
    run: (c) => {
      seen.push({ flags: { ...c.flags }, positionals: c.positionals, rest: c.rest });
      return Promise.resolve(Exit.ok);
    },
  }),
  defineCommand({
    words: ['exec'],
    summary: 'runs',
    flags: {},
    args: { usage: '<pod> -- <command...>', min: 1, max: 1, rest: true },
    run: (c) => {
      seen.push({ flags: { ...c.flags }, positionals: c.positionals, rest: c.rest });
      return Promise.resolve(Exit.ok);
    },
  }),
  defineCommand({
    words: ['boom'],
    summary: 'z',
    flags: {},
    run: () => Promise.reject(new Error('kaboom')),
  }),
];

describe('dyad dispatch', () => {
  it('picks the longest matching command and gives it its parsed flags', async () => {
    const t = io();
    expect(
      await run(['bpf', 'endpoint', 'list', '-o', 'json', '--node=n1', '--all'], t.io, {
        commands,
      }),
    ).toBe(0);
    expect(seen.at(-1)).toMatchObject({
      flags: { output: 'json', node: 'n1', all: true },
      positionals: [],
    });
    expect(await run(['bpf', 'other'], t.io, { commands })).toBe(7);
  });

  it('every spelling of a value flag parses alike', async () => {
    for (const args of [['-o', 'json'], ['-ojson'], ['--output', 'json'], ['--output=json']]) {
      expect(await run(['bpf', 'endpoint', 'list', ...args], io().io, { commands })).toBe(0);
      expect(seen.at(-1)?.flags).toMatchObject({ output: 'json' });
    }
  });

  it('refuses unknown flags, missing values, bad choices and surplus arguments with exit 2', async () => {
    for (const [args, message] of [
      [['bpf', 'endpoint', 'list', '--frobnicate'], 'unknown flag --frobnicate'],
      [['bpf', 'endpoint', 'list', '-x'], 'unknown flag -x'],
      [['bpf', 'endpoint', 'list', '--node'], '--node needs a value'],
      [['bpf', 'endpoint', 'list', '--all=yes'], '--all takes no value'],
      [['bpf', 'endpoint', 'list', '-o', 'xml'], "--output takes table, json; not 'xml'"],
      [['bpf', 'endpoint', 'list', 'extra'], 'unexpected argument extra'],
      [['bpf', 'endpoint', 'list', '--', 'x'], "unexpected '--'"],
      [['exec', 'p'], "a command to run goes after '--'"],
      [['exec', '--', 'true'], 'missing <pod> -- <command...>'],
    ] as const) {
      const t = io();
      expect(await run(args, t.io, { commands }), args.join(' ')).toBe(Exit.usage);
      const err = t.err();
      expect(err).toContain(message);
      expect(err).toContain(
        `Run 'dyad ${args[0] === 'exec' ? 'exec' : 'bpf endpoint list'} --help'`,
      );
      expect(t.out()).toBe('');
    }
  });

  it("after '--' everything is the command's own, --help included", async () => {
    expect(await run(['exec', 'p', '--', 'ls', '-l', '--help'], io().io, { commands })).toBe(0);
    expect(seen.at(-1)).toMatchObject({ positionals: ['p'], rest: ['ls', '-l', '--help'] });
  });

  it('--help and -h print the command help on stdout with exit 0, even beside a bad flag', async () => {
    for (const args of [
      ['bpf', 'endpoint', 'list', '--help'],
      ['bpf', 'endpoint', 'list', '-h', '--bogus'],
      ['help', 'bpf', 'endpoint', 'list'],
    ]) {
      const t = io();
      expect(await run(args, t.io, { commands }), args.join(' ')).toBe(Exit.ok);
      const out = t.out();
      expect(out).toContain('Usage:\n  dyad bpf endpoint list [flags]');
      expect(out).toMatch(/-o, --output VALUE\s+o/);
      expect(out).toContain('-h, --help');
      expect(t.err()).toBe('');
    }
    const e = io();
    expect(await run(['exec', '--help'], e.io, { commands })).toBe(0);
    expect(e.out()).toContain('dyad exec [flags] <pod> -- <command...>');
  });

  it('a group word alone, or with an unknown word, lists its commands: exit 2; with --help exit 0', async () => {
    // Without the `bpf` command itself, `bpf endpoint` is only a group.
    const grouped = { commands: commands.filter((c) => c.words.join(' ') !== 'bpf') };
    for (const [args, message] of [
      [['bpf', 'endpoint'], 'dyad bpf endpoint: a command is needed'],
      [['bpf', 'endpoint', 'lst'], 'dyad bpf endpoint: unknown command "lst"'],
    ] as const) {
      const g = io();
      expect(await run(args, g.io, grouped)).toBe(Exit.usage);
      const err = g.err();
      expect(err).toContain(message);
      expect(err).toContain('bpf endpoint list');
    }
    for (const args of [
      ['bpf', 'endpoint', '--help'],
      ['help', 'bpf', 'endpoint'],
    ]) {
      const h = io();
      expect(await run(args, h.io, grouped)).toBe(Exit.ok);
      expect(h.out()).toContain('bpf endpoint list');
    }
    expect(await run(['help', 'bpf', 'nope'], io().io, grouped)).toBe(Exit.usage);
  });

  it('an unknown command is a usage error; no command or --help is the root help', async () => {
    const t = io();
    expect(await run(['nope'], t.io, { commands, plugins: () => Promise.resolve([]) })).toBe(
      Exit.usage,
    );
    const err = t.err();
    expect(err).toContain('unknown command "nope"');
    // The plugin that is not installed is named, so `dyad lab …` on a node explains itself.
    expect(err).toContain('commands of @dyad/lab appear when it is installed');
    for (const argv of [[], ['--help'], ['-h'], ['help']]) {
      const r = io();
      expect(await run(argv, r.io, { commands, plugins: () => Promise.resolve([]) })).toBe(Exit.ok);
      const out = r.out();
      expect(out).toContain('bpf endpoint list');
      expect(out).toContain('completion bash|zsh');
    }
  });

  it('a failing command exits 1 with its message', async () => {
    const t = io();
    expect(await run(['boom'], t.io, { commands })).toBe(Exit.failed);
    expect(t.err()).toContain('dyad boom: kaboom');
  });

  it('a plugin adds commands and groups; a built-in with the same words wins', async () => {
    const plugin: Plugin = {
      name: '@dyad/lab',
      commands: [
        defineCommand({
          words: ['lab', 'hello'],
          summary: 'greets',
          flags: {},
          run: (c) => {
            c.stdout.write('hi\n');
            return Promise.resolve(0);
          },
        }),
        defineCommand({
          words: ['boom'],
          summary: 'shadowed',
          flags: {},
          run: () => Promise.resolve(0),
        }),
      ],
    };
    const plugins = () => Promise.resolve([plugin]);
    const t = io();
    expect(await run(['lab', 'hello'], t.io, { commands, plugins })).toBe(0);
    expect(t.out()).toBe('hi\n');
    expect(await run(['boom'], io().io, { commands, plugins })).toBe(Exit.failed);
    const h = io();
    expect(await run(['--help'], h.io, { commands, plugins })).toBe(0);
    expect(h.out()).toMatch(/Commands from @dyad\/lab:\n\s+lab hello\s+greets\n\n/);
    const l = io();
    expect(await run(['lab'], l.io, { commands, plugins })).toBe(Exit.usage);
    expect(l.err()).toContain('lab hello');
  });

  it('built-in commands never load plugins; --node asks them', async () => {
    let loads = 0;
    const plugins = () => {
      loads++;
      return Promise.resolve([]);
    };
    await run(['bpf', 'endpoint', 'list'], io().io, { commands, plugins });
    await run(['status', '--help'], io().io, { plugins });
    expect(loads).toBe(0);
    // --node without a socket: the plugins are asked where the node's agent is.
    const t = io();
    const code = await run(
      ['status', '--node', 'n1'],
      { ...t.io, env: { DYAD_AGENT_SOCKET: '/nonexistent/agent.sock' } },
      { plugins },
    );
    expect(loads).toBe(1);
    expect(code).toBe(Exit.unavailable);
    expect(t.err()).toContain('no agent socket at /nonexistent/agent.sock');
  });
});

describe('every built-in command', () => {
  it.each(COMMANDS.map((c) => [c.words.join(' '), c] as const))(
    '%s takes --help (stdout, exit 0) and refuses unknown flags (exit 2)',
    async (words, c) => {
      const h = io();
      expect(await run([...c.words, '--help'], h.io, { plugins: () => Promise.resolve([]) })).toBe(
        Exit.ok,
      );
      expect(h.out()).toContain(`dyad ${words}`);
      const u = io();
      expect(
        await run([...c.words, '--no-such-flag'], u.io, { plugins: () => Promise.resolve([]) }),
      ).toBe(Exit.usage);
      expect(u.err()).toContain('unknown flag --no-such-flag');
    },
  );

  it('list and status commands take -o json|yaml|wide', () => {
    for (const c of COMMANDS.filter((x) => /list$|status$/.test(x.words.join(' ')))) {
      expect(c.flags['output']?.choices, c.words.join(' ')).toEqual([
        'table',
        'wide',
        'json',
        'yaml',
      ]);
    }
  });

  it('--node is the node named NAME in every command that has it', () => {
    const with_ = COMMANDS.filter((c) => c.flags['node'] !== undefined);
    expect(with_.map((c) => c.words.join(' ')).sort()).toEqual([
      'bpf ct list',
      'bpf endpoint list',
      'bpf ipcache list',
      'bpf lb list',
      'endpoint list',
      'ipam list',
      'monitor',
      'observe',
      'service list',
      'status',
      'uninstall',
      'version',
    ]);
    for (const c of with_) expect(c.flags['node']?.description).toMatch(/^the node named NAME/);
  });
});

describe('output', () => {
  it('aligns columns', () => {
    expect(
      formatTable(
        ['ID', 'IPV4'],
        [
          ['1', '198.18.0.1'],
          ['200', '-'],
        ],
      ),
    ).toBe('ID   IPV4\n1    198.18.0.1\n200  -\n');
  });

  it('writes YAML that a YAML parser reads back as the same value', () => {
    const value = {
      node: 'n1',
      ready: false,
      details: 'not connected to NATS (IPAM)',
      uptimeS: 12.5,
      nats: { connected: true, servers: ['nats://127.0.0.1:4222'] },
      families: [
        { family: 'IPv4', enabled: true, cidr: '198.18.0.0/24', gateway: '198.18.0.1' },
        { family: 'IPv6', enabled: false },
      ],
      tricky: [
        'yes',
        'No',
        'null',
        '~',
        '',
        ' lead',
        'trail ',
        'a: b',
        'a #b',
        'fd00:d1ad::',
        '::1',
        '0a:09:0a:d9:c7:7d',
        '1e3',
        '2025-01-01T00:00:00.000Z',
        'line\nbreak',
        '- dash',
        '@at',
        '"q"',
        "it's",
      ],
      nested: [[1, 2], [], {}, [{ a: [] }]],
      empty: {},
      none: null,
      skipped: undefined,
    };
    const text = toYaml(value);
    expect(parseYaml(text)).toEqual(JSON.parse(JSON.stringify(value)));
    expect(text).toContain('details: not connected to NATS (IPAM)\n');
    expect(text).toContain('families:\n- family: IPv4\n  enabled: true\n');
    expect(toYaml([])).toBe('[]\n');
  });

  it('round-trips random strings through YAML', () => {
    const alphabet = 'aZ09 :#-_./@"\'\n\t!&*?|>{}[],%`~';
    let seed = 42;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    for (let i = 0; i < 2000; i++) {
      const s = Array.from({ length: next() % 12 }, () => alphabet[next() % alphabet.length]).join(
        '',
      );
      expect(parseYaml(toYaml({ [s]: s, list: [s] })), JSON.stringify(s)).toEqual({
        [s]: s,
        list: [s],
      });
    }
  });
});
