// `dyad` on a node without the lab: an agent started alone (no lab, no pod runtime), one pod
// added by cnitool, and the CLI run from a copy of packages/cli that can resolve only what its
// package.json declares (and each of those only what it declares, recursively). Proves that
// `dyad status` needs neither @dyad/lab nor @dyad/testbed, that any undeclared import in the
// CLI's closure breaks it here, and that the real agent's answers satisfy the API contract the
// CLI checks them against.
//
// Why a copy and not `npm pack` + `npm install`: the workspace packages ship TypeScript, and
// Node strips types only outside node_modules; so each package is copied to <tmp>/pkgs/<name>
// and given a node_modules of links to exactly its declared dependencies (pnpm's layout).
import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { REPO_ROOT, ensureBpfBuilt, ensureCniBuilt } from './helpers/build.ts';
import { kernelRequired, kernelSkipReason } from './helpers/kernel.ts';
import { AgentHarness } from './helpers/harness.ts';
import type { AgentHandle } from './helpers/harness.ts';

const skip = kernelSkipReason();
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

interface Manifest {
  readonly name: string;
  readonly dependencies?: Readonly<Record<string, string>>;
}

function manifest(dir: string): Manifest {
  return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Manifest;
}

/** Where the repo resolves a package from `fromDir` (Node's lookup), as a real path. */
function installed(name: string, fromDir: string): string {
  for (let d = fromDir; ; d = dirname(d)) {
    const p = join(d, 'node_modules', name);
    if (existsSync(join(p, 'package.json'))) return realpathSync(p);
    if (dirname(d) === d) throw new Error(`${name} is not installed for ${fromDir}`);
  }
}

/** A workspace package lives in the repo outside node_modules; anything else is third-party. */
function isWorkspace(dir: string): boolean {
  const rel = relative(REPO_ROOT, dir);
  return !rel.startsWith('..') && !rel.split(sep).includes('node_modules');
}

/**
 * Copies workspace package `srcDir` (without node_modules and tests) under `root/pkgs/` and links
 * its declared dependencies into its own node_modules: workspace ones copied the same way,
 * third-party ones to the repo's installed copy. Dev and optional peer dependencies are left
 * out, as a user's install leaves them out. Returns the copy's directory.
 */
function isolate(srcDir: string, root: string, done: Map<string, string>): string {
  const m = manifest(srcDir);
  const copied = done.get(m.name);
  if (copied !== undefined) return copied;
  const dest = join(root, 'pkgs', m.name.replace('/', '+'));
  done.set(m.name, dest);
  cpSync(srcDir, dest, {
    recursive: true,
    filter: (p) => !['node_modules', 'test'].includes(relative(srcDir, p).split(sep)[0] ?? ''),
  });
  for (const dep of Object.keys(m.dependencies ?? {})) {
    const from = installed(dep, srcDir);
    const target = isWorkspace(from) ? isolate(from, root, done) : from;
    const link = join(dest, 'node_modules', dep);
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(target, link, 'dir');
  }
  return dest;
}

describe.skipIf(skip !== undefined)(
  'dyad from its declared dependencies, against an agent alone',
  () => {
    const lab = new AgentHarness();
    let agent: AgentHandle;
    let root: string;
    let cli: string;
    // What beforeAll made, removed even when it stopped half-way.
    const teardown: (() => unknown)[] = [];

    /** Runs the copied `dyad` with a bare environment: no DYAD_*, no NODE_PATH. */
    const dyad = (...args: string[]) =>
      spawnSync(process.execPath, [join(cli, 'bin', 'dyad.js'), ...args], {
        encoding: 'utf8',
        env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' },
        cwd: root,
        timeout: 60_000,
      });

    beforeAll(async () => {
      ensureBpfBuilt();
      ensureCniBuilt();
      root = mkdtempSync(join(tmpdir(), 'dyad-cli-alone-'));
      teardown.push(() => rmSync(root, { recursive: true, force: true }));
      cli = isolate(join(REPO_ROOT, 'packages', 'cli'), root, new Map());
      await lab.start();
      await lab.addNode('n1');
      agent = await lab.startAgent('n1');
      const r = await lab.cnitool(agent, 'add', lab.addPodNetns('web'), {
        namespace: 'default',
        name: 'web',
      });
      expect(r.code, r.stderr).toBe(0);
    });

    afterAll(async () => {
      await lab.cleanup();
      for (const undo of teardown.reverse()) await undo();
    });

    test('the copy cannot reach the lab, the test bed or anything it does not declare', () => {
      for (const pkg of ['@dyad/lab', '@dyad/testbed', '@dyad/libbpf-ts', 'vitest']) {
        const r = spawnSync(
          process.execPath,
          ['--input-type=module', '-e', `await import(${JSON.stringify(pkg)})`],
          { cwd: cli, encoding: 'utf8' },
        );
        expect(r.status, `${pkg} resolved from the copy`).not.toBe(0);
        expect(r.stderr).toContain('ERR_MODULE_NOT_FOUND');
      }
    });

    test('dyad status works: exit 0, the node, ready, both families', () => {
      const r = dyad('status', '--agent-socket', agent.apiSocket);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/^Node:\s+n1$/m);
      expect(r.stdout).toMatch(/^Agent:\s+Ready$/m);
      expect(r.stdout).toMatch(/^Families:\s+IPv4 \S+ gw \S+, IPv6 \S+ gw \S+$/m);
      expect(r.stdout).toMatch(/^Endpoints:\s+1 ready, 0 pending$/m);
    });

    test("every agent command reads the real agent's answers through the contract", () => {
      for (const words of [
        ['status', '-o', 'yaml'],
        ['endpoint', 'list', '-o', 'wide'],
        ['bpf', 'endpoint', 'list'],
        ['bpf', 'ipcache', 'list'],
        ['bpf', 'ct', 'list'],
        ['version'],
      ]) {
        const r = dyad(...words, '--agent-socket', agent.apiSocket);
        expect(r.stderr, words.join(' ')).toBe('');
        expect(r.status, words.join(' ')).toBe(0);
      }
      const e = dyad('endpoint', 'list', '--agent-socket', agent.apiSocket);
      expect(e.stdout).toMatch(
        /^1\s+default\/web\s+198\.\S+\s+fd00:\S+\s+\d+\s+disabled\/disabled\s+ready/m,
      );
      expect(dyad('version', '--agent-socket', agent.apiSocket).stdout).toMatch(
        /^Agent:\s+\S+ on node n1, API v1/m,
      );
    });

    test('dyad ipam list reads the node blocks and the pod from NATS (the bus loaded from the copy)', () => {
      const r = dyad('ipam', 'list', '--nats', lab.nats.url, '--node', 'n1');
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/^n1\s+IPv4\s+198\./m);
      expect(r.stdout).toMatch(/^n1\s+default\s+web\s+198\.\S+\s+fd00:/m);
    });

    test('--node and $DYAD_AGENT_SOCKET without the lab: the agent must be that node’s', () => {
      const env = { PATH: process.env['PATH'] ?? '', DYAD_AGENT_SOCKET: agent.apiSocket };
      const run = (...args: string[]) =>
        spawnSync(process.execPath, [join(cli, 'bin', 'dyad.js'), ...args], {
          encoding: 'utf8',
          env,
          cwd: root,
        });
      expect(run('status', '--node', 'n1').status).toBe(0);
      const other = run('status', '--node', 'n2');
      expect(other.status).toBe(2);
      expect(other.stderr).toContain('--node n2: the agent at');
    });

    test('without the lab installed, its commands are not there and dyad says why', () => {
      const r = dyad(
        'lab',
        'probe',
        'a/b',
        'c/d',
        '--port',
        '80',
        '--protocol',
        'TCP',
        '--family',
        'IPv4',
      );
      expect(r.status).toBe(2);
      expect(r.stderr).toContain(
        'unknown command "lab" (commands of @dyad/lab appear when it is installed)',
      );
      const h = dyad('--help');
      expect(h.status).toBe(0);
      expect(h.stdout).not.toContain('lab probe');
    });
  },
);
