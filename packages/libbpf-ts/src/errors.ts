import { errnoName } from './errno.ts';

/** A libbpf or kernel call failed; `code` is the errno name (E2BIG, ENOENT, ...). */
export class LibbpfError extends Error {
  readonly op: string;
  readonly errno: number;
  readonly code: string;

  constructor(op: string, errno: number, options?: { cause?: unknown; detail?: string }) {
    const code = errnoName(errno);
    const detail = options?.detail ? ` (${options.detail})` : '';
    super(
      `${op} failed: ${code}${detail}`,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'LibbpfError';
    this.op = op;
    this.errno = errno;
    this.code = code;
  }
}

/** A value does not fit its codec (wrong size, out of range, bad address). */
export class CodecError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CodecError';
  }
}

/** A handle was used after close. */
export class ClosedError extends Error {
  constructor(what: string, options?: { cause?: unknown }) {
    super(`${what} is closed`, options);
    this.name = 'ClosedError';
  }
}

/** The system libbpf could not be loaded or lacks a symbol this binding needs. */
export class LibbpfLoadError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LibbpfLoadError';
  }
}
