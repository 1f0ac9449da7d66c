import { getSystemErrorMap } from 'node:util';

const systemErrors = getSystemErrorMap();

/** errno number → its symbolic name (`ENOENT`), or `E<n>` when Node does not know it. */
export function errnoName(errno: number): string {
  return systemErrors.get(-Math.abs(errno))?.[0] ?? `E${errno}`;
}

/** errno number → the libc description ("No such file or directory"). */
export function errnoMessage(errno: number): string {
  return systemErrors.get(-Math.abs(errno))?.[1] ?? `error ${errno}`;
}

/**
 * A failed system call: which call, on what, and the errno name. Every native wrapper throws this, so callers
 * above can decide on `code` (e.g. ESRCH means the target exited) without parsing messages.
 */
export class NativeError extends Error {
  readonly code: string;
  constructor(
    readonly call: string,
    readonly errno: number,
    readonly subject?: string,
  ) {
    super(`${call}${subject ? ` ${subject}` : ''}: ${errnoName(errno)} (${errnoMessage(errno)})`);
    this.name = 'NativeError';
    this.code = errnoName(errno);
  }
}

/** Errors from Node's own fs calls carry `code` and `syscall`; turn them into the same shape. */
export function fromNodeError(err: unknown, call: string, subject?: string): Error {
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.errno === 'number') return new NativeError(call, Math.abs(e.errno), subject);
  return err instanceof Error ? err : new Error(String(err));
}

export function isErrno(err: unknown, ...codes: string[]): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && codes.includes(code);
}

/**
 * An error meant for the person at the terminal: what failed, on what, the errno name when there is one, and
 * what to do about it. Commands print it as one line.
 */
export class PagesnapError extends Error {
  readonly code?: string;
  readonly hint?: string;
  /** the exit code a command should end with (1 unless the error says otherwise) */
  readonly exitCode: number;
  constructor(message: string, opts: { code?: string; hint?: string; cause?: unknown; exitCode?: number } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'PagesnapError';
    this.code = opts.code;
    this.hint = opts.hint;
    this.exitCode = opts.exitCode ?? 1;
  }
}
