import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import type { DurableFs } from '../src/durable.ts';
import { GroupCommitFile, nodeFs } from '../src/durable.ts';
import { StateError } from '../src/errors.ts';

/** What the injected fs saw: `open:w`, `write`, `sync:file`, `close`, `rename`, `open:r`, `sync:dir`, … */
type OpName =
  | 'open:w'
  | 'open:r'
  | 'write'
  | 'sync:file'
  | 'sync:dir'
  | 'close'
  | 'rename'
  | 'readFile'
  | 'unlink';

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(v: T): void;
}

function deferred<T>(): Deferred<T> {
  let resolve: (v: T) => void = () => undefined;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

interface Hold {
  /** Resolves when the held operation is reached (before it runs). */
  readonly reached: Promise<undefined>;
  /** Lets it run, or fail with `error` instead. */
  release(error?: Error): void;
}

/**
 * The real node:fs underneath, with every operation recorded, and one-shot rules that hold an
 * operation until the test releases it (to line up concurrent commits without sleeping) or fail it.
 */
class ScriptedFs {
  readonly ops: OpName[] = [];
  readonly #rules: { op: OpName; reached: Deferred<undefined>; go: Deferred<Error | undefined> }[] =
    [];

  hold(op: OpName): Hold {
    const rule = { op, reached: deferred<undefined>(), go: deferred<Error | undefined>() };
    this.#rules.push(rule);
    return { reached: rule.reached.promise, release: (e) => rule.go.resolve(e) };
  }

  fail(op: OpName, error: Error): void {
    this.hold(op).release(error);
  }

  count(op: OpName): number {
    return this.ops.filter((o) => o === op).length;
  }

  async #step(op: OpName): Promise<void> {
    this.ops.push(op);
    const i = this.#rules.findIndex((r) => r.op === op);
    if (i < 0) return;
    const [rule] = this.#rules.splice(i, 1);
    if (rule === undefined) return;
    rule.reached.resolve(undefined);
    const error = await rule.go.promise;
    if (error !== undefined) throw error;
  }

  readonly fs: DurableFs = {
    open: async (path, flags) => {
      await this.#step(flags === 'w' ? 'open:w' : 'open:r');
      const h = await nodeFs.open(path, flags);
      const kind = flags === 'w' ? 'sync:file' : 'sync:dir';
      return {
        writeFile: async (data, enc) => {
          await this.#step('write');
          await h.writeFile(data, enc);
        },
        sync: async () => {
          await this.#step(kind);
          await h.sync();
        },
        close: async () => {
          await this.#step('close');
          await h.close();
        },
      };
    },
    rename: async (from, to) => {
      await this.#step('rename');
      await nodeFs.rename(from, to);
    },
    readFile: async (path, enc) => {
      await this.#step('readFile');
      return nodeFs.readFile(path, enc);
    },
    unlink: async (path) => {
      await this.#step('unlink');
      await nodeFs.unlink(path);
    },
  };
}

/**
 * A broken GroupCommitFile would leave a test waiting for an operation that never comes: fail
 * then, instead of waiting for the runner's 10-minute guard. Not a speed limit (these take ms).
 */
const HANG_GUARD_MS = 20_000;

let dir: string;
let path: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dyad-durable-'));
  path = join(dir, 'ipam.json');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A state that is just a counter, rendered as a line. */
function counter(): { state: { n: number }; render: () => string } {
  const state = { n: 0 };
  return { state, render: () => `state ${state.n}\n` };
}

function ioError(what: string): Error {
  return Object.assign(new Error(`injected: ${what}`), { code: 'EIO' });
}

async function rejection(p: Promise<void>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('resolved');
}

describe('GroupCommitFile: one write', { timeout: HANG_GUARD_MS }, () => {
  test('temp file written and fsynced, renamed over the path, directory fsynced', async () => {
    const s = new ScriptedFs();
    const c = counter();
    const f = new GroupCommitFile(path, c.render, s.fs);
    c.state.n = 1;
    await f.commit();
    expect(s.ops).toEqual([
      'open:w',
      'write',
      'sync:file',
      'close',
      'rename',
      'open:r',
      'sync:dir',
      'close',
    ]);
    expect(await readFile(path, 'utf8')).toBe('state 1\n');
    expect(await readdir(dir)).toEqual(['ipam.json']);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(f.stats()).toEqual({ writes: 1, failures: 0, unchanged: 0 });
  });

  test('the state as it is when the write starts, not as it was built before', async () => {
    const c = counter();
    const f = new GroupCommitFile(path, c.render);
    c.state.n = 7;
    const p = f.commit();
    c.state.n = 8; // after the write started: the render already happened
    await p;
    expect(await readFile(path, 'utf8')).toBe('state 7\n');
  });

  test('a state this instance already made durable is not written again', async () => {
    const s = new ScriptedFs();
    const c = counter();
    const f = new GroupCommitFile(path, c.render, s.fs);
    await f.commit();
    const before = s.ops.length;
    await f.commit();
    expect(s.ops.length).toBe(before);
    expect(f.stats()).toEqual({ writes: 1, failures: 0, unchanged: 1 });
  });

  test('a render that throws rejects the commit and writes nothing', async () => {
    const s = new ScriptedFs();
    const f = new GroupCommitFile(
      path,
      () => {
        throw new Error('no state');
      },
      s.fs,
    );
    const e = await rejection(f.commit());
    expect(e).toBeInstanceOf(StateError);
    expect((e as Error).cause).toMatchObject({ message: 'no state' });
    expect(s.ops).toEqual([]);
  });
});

describe('GroupCommitFile: group commit', { timeout: HANG_GUARD_MS }, () => {
  test('50 commits made while a write is under way share the one next write', async () => {
    const s = new ScriptedFs();
    const c = counter();
    const f = new GroupCommitFile(path, c.render, s.fs);
    const held = s.hold('sync:file');
    c.state.n = 1;
    const first = f.commit();
    await held.reached;
    const rest: Promise<void>[] = [];
    for (let i = 0; i < 50; i++) {
      c.state.n++;
      rest.push(f.commit());
    }
    held.release();
    await Promise.all([first, ...rest]);
    expect(s.count('sync:file')).toBe(2);
    expect(s.count('sync:dir')).toBe(2);
    expect(f.stats().writes).toBe(2);
    expect(await readFile(path, 'utf8')).toBe('state 51\n');
  });

  test('a commit made during a write waits for the next write, which holds its state', async () => {
    const s = new ScriptedFs();
    const c = counter();
    const f = new GroupCommitFile(path, c.render, s.fs);
    const firstHeld = s.hold('sync:dir');
    c.state.n = 1;
    const first = f.commit();
    await firstHeld.reached;
    c.state.n = 2;
    let secondDone = false;
    const second = f.commit().then(() => {
      secondDone = true;
    });
    const secondHeld = s.hold('sync:dir');
    firstHeld.release();
    await first;
    // A commit that joined the first write would have settled with it, by the next turn.
    await new Promise<void>((r) => setImmediate(r));
    expect(secondDone).toBe(false);
    await secondHeld.reached; // the second write has been renamed in, not yet made durable
    expect(secondDone).toBe(false);
    expect(await readFile(path, 'utf8')).toBe('state 2\n');
    secondHeld.release();
    await second;
    expect(secondDone).toBe(true);
  });
});

describe('GroupCommitFile: failures', { timeout: HANG_GUARD_MS }, () => {
  test.each(['open:w', 'write', 'sync:file', 'rename'] as const)(
    'a failed %s rejects every waiter of that write with the cause; the old file stays; the next commit writes',
    async (op) => {
      const s = new ScriptedFs();
      const c = counter();
      const f = new GroupCommitFile(path, c.render, s.fs);
      c.state.n = 1;
      await f.commit();
      const held = s.hold('sync:dir'); // a third write starts while the failing one is under way
      c.state.n = 2;
      const blocker = f.commit();
      await held.reached;
      const cause = ioError(op);
      s.fail(op, cause);
      c.state.n = 3;
      const waiters = [f.commit(), f.commit(), f.commit()];
      held.release();
      await blocker;
      for (const w of waiters) {
        const e = await rejection(w);
        expect(e).toBeInstanceOf(StateError);
        expect((e as Error).cause).toBe(cause);
      }
      expect(await readFile(path, 'utf8')).toBe('state 2\n');
      expect(await readdir(dir)).toEqual(['ipam.json']);
      await f.commit();
      expect(await readFile(path, 'utf8')).toBe('state 3\n');
      expect(f.stats()).toEqual({ writes: 3, failures: 1, unchanged: 0 });
    },
  );

  test('a failed directory fsync rejects; the same state is then written again', async () => {
    const s = new ScriptedFs();
    const c = counter();
    const f = new GroupCommitFile(path, c.render, s.fs);
    c.state.n = 1;
    s.fail('sync:dir', ioError('dir'));
    expect(await rejection(f.commit())).toBeInstanceOf(StateError);
    // The rename happened, so the file holds state 1, but whether that survives is unknown.
    await f.commit();
    expect(f.stats()).toEqual({ writes: 1, failures: 1, unchanged: 0 });
    expect(s.count('sync:dir')).toBe(2);
  });

  test('the waiters of the next write are not hurt by the failure of the one before', async () => {
    const s = new ScriptedFs();
    const c = counter();
    const f = new GroupCommitFile(path, c.render, s.fs);
    const held = s.hold('sync:file');
    c.state.n = 1;
    const first = f.commit();
    await held.reached;
    c.state.n = 2;
    const second = f.commit();
    held.release(ioError('first'));
    expect(await rejection(first)).toBeInstanceOf(StateError);
    await second;
    expect(await readFile(path, 'utf8')).toBe('state 2\n');
  });
});

describe('GroupCommitFile.load', { timeout: HANG_GUARD_MS }, () => {
  test('undefined when there is no file', async () => {
    expect(await new GroupCommitFile(path, () => '').load()).toBeUndefined();
  });

  test('the text of the file; a temp file a crashed write left is removed, never read', async () => {
    await writeFile(path, 'state 4\n');
    await writeFile(`${path}.tmp`, 'state 5 (half');
    const f = new GroupCommitFile(path, () => '');
    expect(await f.load()).toBe('state 4\n');
    expect(await readdir(dir)).toEqual(['ipam.json']);
  });

  test('a file that cannot be read is a StateError', async () => {
    const f = new GroupCommitFile(dir, () => ''); // a directory
    const e = await rejection(f.load().then(() => undefined));
    expect(e).toBeInstanceOf(StateError);
  });
});
