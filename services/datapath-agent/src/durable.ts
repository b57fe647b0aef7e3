import { open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { StateError } from './errors.ts';

/**
 * Durable whole-file writes with group commit: the agent's answer to a CNI ADD must survive a
 * power loss once given (the pod is up with those addresses), and an fsync costs milliseconds,
 * so every commit waiting at the same time shares one write.
 *
 * A write: the state rendered at that moment to `<path>.tmp`, fsync'ed, renamed over `<path>`,
 * and the directory fsync'ed (the rename itself is only durable then). A reader, or the next
 * agent after a crash, sees the old file or the new one, never a mix.
 */

/** The part of a node:fs/promises FileHandle a write uses. */
export interface DurableFileHandle {
  writeFile(data: string, encoding: 'utf8'): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** The file operations, injectable so tests can count them, fail them or lose them in a crash. */
export interface DurableFs {
  /** 'w': create or truncate a file; 'r': a directory, opened to fsync it. */
  open(path: string, flags: 'w' | 'r'): Promise<DurableFileHandle>;
  rename(from: string, to: string): Promise<void>;
  readFile(path: string, encoding: 'utf8'): Promise<string>;
  unlink(path: string): Promise<void>;
}

export const nodeFs: DurableFs = {
  open: (path, flags) => open(path, flags, 0o600),
  rename,
  readFile,
  unlink,
};

export interface GroupCommitStats {
  /** Writes that became durable. */
  readonly writes: number;
  /** Writes that failed (each rejected all its waiters). */
  readonly failures: number;
  /** Commits answered without a write: the state was what this instance last made durable. */
  readonly unchanged: number;
}

interface Waiters {
  readonly promise: Promise<void>;
  resolve(p: Promise<void>): void;
}

function waiters(): Waiters {
  let resolve: (p: Promise<void>) => void = () => undefined;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

function isNotFound(e: unknown): boolean {
  return e instanceof Error && (e as NodeJS.ErrnoException).code === 'ENOENT';
}

export class GroupCommitFile {
  readonly path: string;
  readonly #tmp: string;
  readonly #dir: string;
  readonly #render: () => string;
  readonly #fs: DurableFs;
  /** The write under way, if any. */
  #inFlight: Promise<void> | undefined;
  /** Commits made while a write was under way: they share the next write. */
  #next: Waiters | undefined;
  /**
   * The text this instance last made durable, undefined when unknown (nothing written yet, or a
   * write failed after its rename). Not taken from `load`: a file read after a process crash may
   * be a rename the old process never fsync'ed, in the page cache only.
   */
  #durable: string | undefined;
  #writes = 0;
  #failures = 0;
  #unchanged = 0;

  /**
   * `render` gives the current state as the file's text; it is called when a write starts, so a
   * write holds every change made before it began. The directory must exist.
   */
  constructor(path: string, render: () => string, fs: DurableFs = nodeFs) {
    this.path = path;
    this.#tmp = join(dirname(path), `${basename(path)}.tmp`);
    this.#dir = dirname(path);
    this.#render = render;
    this.#fs = fs;
  }

  /**
   * Resolves once a write that started after this call is durable, so the state as it is now is
   * on disk (or a later one). While a write is under way, every commit meanwhile waits for the
   * single next write, which starts when that one ends: N concurrent callers cost about two
   * writes, not N. Rejects with a StateError (the fs error as its cause) when that write fails;
   * the file then still holds the previous state, and the next commit writes again. A state equal
   * to the one this instance last made durable resolves without writing.
   */
  commit(): Promise<void> {
    if (this.#inFlight === undefined) return this.#start();
    this.#next ??= waiters();
    return this.#next.promise;
  }

  /**
   * The file's text, or undefined when there is none. Removes a temp file a crashed write left
   * (never a whole state: the rename is what publishes one). Call it before the first commit.
   */
  async load(): Promise<string | undefined> {
    if (this.#inFlight === undefined) {
      try {
        await this.#fs.unlink(this.#tmp);
      } catch (e) {
        if (!isNotFound(e)) throw new StateError(`cannot remove ${this.#tmp}`, { cause: e });
      }
    }
    try {
      return await this.#fs.readFile(this.path, 'utf8');
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw new StateError(`cannot read ${this.path}`, { cause: e });
    }
  }

  /** Resolves once no write is under way or queued (each settled, failed or not). */
  async idle(): Promise<void> {
    while (this.#inFlight !== undefined) await this.#inFlight.catch(() => undefined);
  }

  stats(): GroupCommitStats {
    return { writes: this.#writes, failures: this.#failures, unchanged: this.#unchanged };
  }

  /** Starts a write of the state as it is now; the promise settles when it is durable or failed. */
  #start(): Promise<void> {
    let text: string;
    try {
      text = this.#render();
    } catch (e) {
      return Promise.reject(new StateError(`cannot render ${this.path}`, { cause: e }));
    }
    if (text === this.#durable) {
      this.#unchanged++;
      return Promise.resolve();
    }
    const write = this.#write(text);
    this.#inFlight = write;
    const done = (): void => {
      this.#inFlight = undefined;
      const next = this.#next;
      this.#next = undefined;
      next?.resolve(this.#start());
    };
    write.then(done, done);
    return write;
  }

  async #write(text: string): Promise<void> {
    let renamed = false;
    try {
      // A fresh temp file every time: after a failed fsync Linux may drop the dirty pages and
      // report success on a retried fsync of the same file, so a failed write is never retried
      // in place.
      await this.#withHandle(this.#tmp, 'w', async (h) => {
        await h.writeFile(text, 'utf8');
        await h.sync();
      });
      await this.#fs.rename(this.#tmp, this.path);
      renamed = true;
      await this.#withHandle(this.#dir, 'r', (h) => h.sync());
    } catch (e) {
      this.#failures++;
      // After the rename the file holds the new text, durable or not: nothing is known on disk.
      if (renamed) this.#durable = undefined;
      else await this.#fs.unlink(this.#tmp).catch(() => undefined);
      throw new StateError(`cannot write ${this.path}`, { cause: e });
    }
    this.#writes++;
    this.#durable = text;
  }

  /** Opens, runs, closes; a close that fails after a successful run fails the write. */
  async #withHandle(
    path: string,
    flags: 'w' | 'r',
    run: (h: DurableFileHandle) => Promise<void>,
  ): Promise<void> {
    const h = await this.#fs.open(path, flags);
    try {
      await run(h);
    } catch (e) {
      await h.close().catch(() => undefined);
      throw e;
    }
    await h.close();
  }
}
