/**
 * A snapshot file until it is complete, and how it gets its name. Preferably a file with no name in the
 * destination's directory (O_TMPFILE): until publish() links it in, there is nothing to leave behind however
 * pagesnap ends, SIGKILL included. Where the filesystem cannot make one (FAT, FUSE, network mounts), a hidden
 * temporary name beside the destination, removed on every exit pagesnap sees (atExit) and renamed at the end.
 * Either way nothing ever appears under the final name before the file is complete and durable.
 */
import { fsyncSync, openSync, closeSync, existsSync, linkSync, renameSync, unlinkSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PagesnapError, NativeError, fromNodeError, isErrno, renameNoReplace, linkFd, atExit } from '../native/index.js';
import { OutputFile } from './output.js';

const hiddenName = (path: string) => join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);

/** The error for a name that is taken. */
export const alreadyExists = (path: string) => new PagesnapError(`${path} already exists`, { code: 'EEXIST', hint: 'choose another name or pass --force to replace it' });

/**
 * Rename without replacing: renameat2(RENAME_NOREPLACE) where the filesystem has it; else link() (which fails on
 * an existing name) and unlink; else, on filesystems with neither (FAT, some FUSE and network mounts), a check then
 * a rename: a name that appears in between is replaced, the only case that can.
 */
function renameNoReplacing(from: string, to: string): void {
  try {
    return renameNoReplace(from, to);
  } catch (e) {
    if (!isErrno(e, 'EINVAL', 'ENOSYS', 'EOPNOTSUPP', 'ENOTSUP')) throw e;
  }
  try {
    linkSync(from, to);
    return unlinkSync(from);
  } catch (e) {
    if (!isErrno(e, 'EPERM', 'EOPNOTSUPP', 'ENOTSUP', 'ENOSYS')) throw e;
  }
  if (existsSync(to)) throw alreadyExists(to);
  renameSync(from, to);
}

/** What to do when writing an output fails: the command-wide hints for these codes are about the target. */
const OUTPUT_HINTS: Record<string, string> = {
  EACCES: 'choose a directory you may write to',
  EPERM: 'choose a directory you may write to',
  EROFS: 'the file system is read-only: write elsewhere',
  ENAMETOOLONG: 'choose a shorter path (a unix socket\'s is at most 107 bytes)',
};

/** A failure to create or look at an output file, saying what to do about it. */
export function outputError(e: unknown, call: string, path: string): Error {
  const err = e instanceof NativeError ? e : fromNodeError(e, call, path);
  const hint = err instanceof NativeError ? OUTPUT_HINTS[err.code] : undefined;
  return hint ? new PagesnapError(err.message, { code: (err as NativeError).code, hint, cause: e }) : err;
}

/** Fails, naming the directory, when `path` is in one that does not exist; `what` is written there (for the hint). */
export function requireDirectory(path: string, what: string): void {
  if (!existsSync(dirname(resolve(path)))) {
    throw new PagesnapError(`${dirname(path)} does not exist`, { code: 'ENOENT', hint: `create the directory first, or write the ${what} elsewhere` });
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    /* not there */
  }
}

/** Where a snapshot is written, and how it gets its name once complete. */
export interface Destination {
  readonly out: OutputFile;
  /** give the complete file its name (a no-op for a stream) */
  publish(force: boolean): void;
  /** forget a file that will not be completed; safe to call twice */
  discard(): void;
}

export class PendingFile implements Destination {
  readonly out: OutputFile;
  private readonly unnamed: boolean;
  /** the hidden name it has until published or discarded, on a filesystem without unnamed files */
  private tmpPath: string | null = null;
  private forget: (() => void) | null = null;

  constructor(readonly path: string) {
    try {
      this.out = OutputFile.unnamed(dirname(path), path);
      this.unnamed = true;
      return;
    } catch (e) {
      // EISDIR: a kernel that predates O_TMPFILE takes it for O_DIRECTORY
      if (!isErrno(e, 'EOPNOTSUPP', 'ENOTSUP', 'EISDIR')) throw outputError(e, 'open', path);
    }
    this.unnamed = false;
    this.tmpPath = hiddenName(path);
    try {
      this.out = OutputFile.create(this.tmpPath, path); // (errors name the file asked for, not the hidden name)
    } catch (e) {
      throw outputError(e, 'open', path);
    }
    this.forget = atExit(() => this.discard());
  }

  /**
   * Give the complete file (finished, its descriptor still open) its name: never over one that appeared meanwhile,
   * unless `force`; then make the name durable. On failure nothing is left under either name.
   */
  publish(force: boolean): void {
    try {
      if (this.unnamed) this.linkUnnamed(force);
      else if (this.tmpPath === null) throw new Error(`${this.path}: published after it was discarded`);
      else if (force) renameSync(this.tmpPath, this.path);
      else renameNoReplacing(this.tmpPath, this.path);
    } catch (e) {
      this.discard();
      if (isErrno(e, 'EEXIST')) throw alreadyExists(this.path);
      throw e instanceof NativeError || e instanceof PagesnapError ? e : fromNodeError(e, 'rename', this.path);
    }
    this.tmpPath = null;
    this.forget?.();
    this.forget = null;
    // some filesystems (FUSE, network mounts) cannot fsync a directory: theirs to keep
    const dir = openSync(dirname(this.path), 'r');
    try {
      fsyncSync(dir);
    } catch (e) {
      if (!isErrno(e, 'EINVAL', 'ENOSYS', 'EOPNOTSUPP', 'ENOTSUP')) throw fromNodeError(e, 'fsync', dirname(this.path));
    } finally {
      closeSync(dir);
    }
  }

  /** linkat never replaces: to replace, link under a hidden name, then rename that over the old file. */
  private linkUnnamed(force: boolean): void {
    if (!force) return linkFd(this.out.fd, this.path);
    const tmp = hiddenName(this.path);
    linkFd(this.out.fd, tmp);
    try {
      renameSync(tmp, this.path);
    } catch (e) {
      unlinkQuietly(tmp);
      throw e;
    }
  }

  /** Drop the hidden name, if the file has one (an unnamed file goes with its descriptor). Safe to call twice. */
  discard(): void {
    if (this.tmpPath !== null) unlinkQuietly(this.tmpPath);
    this.tmpPath = null;
    this.forget?.();
    this.forget = null;
  }
}

/**
 * Write `data` to `path` whole or not at all, 0600, replacing what is there (a picture or profile the command was
 * asked to write, or writes again each time).
 */
export async function writeWhole(path: string, data: string | Uint8Array): Promise<void> {
  requireDirectory(path, 'file');
  const file = new PendingFile(path);
  try {
    await file.out.append(typeof data === 'string' ? Buffer.from(data) : data);
    await file.out.finish();
    file.publish(true);
  } finally {
    await file.out.close();
    file.discard();
  }
}
