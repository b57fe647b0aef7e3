// dyad-cni (C) with random environments and stdin, against the agent's real CNI handler and a
// recording backend: the binary never crashes, every refusal is a CNI error with a code, and a
// request that does not parse reaches no backend call (no state changes).
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kernelRequired } from '@dyad/testbed';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handleCni } from '../src/cni/handler.ts';
import type { CniBackend, CniReply } from '../src/cni/handler.ts';
import { startCniServer } from '../src/cni/server.ts';
import type { CniServer } from '../src/cni/server.ts';
import { DYAD_CNI, buildSkipReason, ensureCniBuilt } from './helpers/build.ts';

const skip = buildSkipReason();
if (skip && kernelRequired()) it('dyad-cni must be buildable', () => expect.fail(skip));

let backendCalls = 0;
// Every call fails: the fuzz looks at what reaches the backend, not at wiring pods.
const backend: CniBackend = {
  add: () => {
    backendCalls++;
    return Promise.reject(new Error('fuzz backend: no pods here'));
  },
  del: () => {
    backendCalls++;
    return Promise.resolve();
  },
  check: () => {
    backendCalls++;
    return Promise.resolve();
  },
  gc: () => {
    backendCalls++;
    return Promise.resolve();
  },
  status: () => {
    backendCalls++;
    return { ready: true, details: '' };
  },
};

function runCni(
  env: Record<string, string>,
  stdin: string,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      DYAD_CNI,
      [],
      { env, encoding: 'utf8', timeout: 20_000 },
      (err, stdout) =>
        resolve({
          code: err ? (typeof err.code === 'number' ? err.code : null) : 0,
          signal: err?.signal ?? null,
          stdout,
        }),
    );
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(stdin);
  });
}

const VALID_CONF = {
  cniVersion: '1.1.0',
  name: 'dyad',
  type: 'dyad-cni',
};

/** Text that is sometimes close to valid: a token, a number, a path, or anything. */
const word = fc.oneof(
  fc.constantFrom('ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION', 'add', ''),
  fc.constantFrom('eth0', 'c1', '/run/netns/x', 'K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p', '1.1.0'),
  fc.string({ maxLength: 60 }),
  fc.string({ unit: 'binary', maxLength: 60 }).map((s) => s.replace(/\0/g, '')),
);

const CNI_VARS = [
  'CNI_COMMAND',
  'CNI_CONTAINERID',
  'CNI_NETNS',
  'CNI_IFNAME',
  'CNI_ARGS',
  'CNI_PATH',
];

const stdinArb = fc.oneof(
  fc.string({ maxLength: 300 }),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc
    .record(
      {
        cniVersion: fc.oneof(fc.constantFrom('1.1.0', '1.0.0', '0.4.0', '9.9.9'), fc.string()),
        name: word,
        type: word,
        extra: fc.jsonValue(),
      },
      { requiredKeys: [] },
    )
    .map((o) => JSON.stringify({ ...VALID_CONF, ...o })),
);

describe.skipIf(skip !== undefined)('dyad-cni under random input (fast-check)', () => {
  const teardown: (() => unknown)[] = [];
  let dir: string;
  let server: CniServer;
  let sock: string;
  const seen: { last?: CniReply } = {};
  // Read through a call: the handler sets it while the test awaits the binary.
  const lastReply = (): CniReply | undefined => seen.last;

  beforeAll(async () => {
    ensureCniBuilt();
    dir = mkdtempSync(join(tmpdir(), 'dyad-cni-fuzz-'));
    sock = join(dir, 'cni.sock');
    server = await startCniServer(
      sock,
      async (raw) => (seen.last = await handleCni(raw, backend)),
      () => undefined,
    );
    teardown.push(() => server.close());
  });
  afterAll(async () => {
    for (const undo of teardown.reverse()) await undo();
    rmSync(dir, { recursive: true, force: true });
  });

  it('never crashes; every failure is a CNI error with a code; what does not parse calls nothing', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(fc.constantFrom(...CNI_VARS), word),
        stdinArb,
        async (vars, stdin) => {
          delete seen.last;
          const before = backendCalls;
          const r = await runCni({ ...vars, DYAD_CNI_SOCKET: sock }, stdin);
          expect(r.signal).toBeNull();
          expect(r.code === 0 || r.code === 1).toBe(true);
          if (r.code !== 0) {
            const err = JSON.parse(r.stdout) as { code?: unknown; msg?: unknown };
            expect(typeof err.code).toBe('number');
            expect(typeof err.msg).toBe('string');
          }
          // A request the agent could not parse changed nothing: no backend call at all.
          const reply = lastReply();
          if (reply !== undefined && reply.request === undefined) expect(backendCalls).toBe(before);
        },
      ),
      { numRuns: 300 },
    );
  });
});
