/**
 * The snapshot's byte stream on disk. Bytes are appended into page-aligned staging buffers that are written with
 * O_DIRECT, two in turn (one fills while the other is written): a multi-gigabyte snapshot then neither evicts the
 * host's page cache nor leaves gigabytes of dirty pages to write back. Where the filesystem refuses O_DIRECT (tmpfs
 * on older kernels) the same buffers are written through the page cache. The last block is padded for O_DIRECT and
 * the file truncated to its exact size at the end.
 *
 * A stream (standard output: a pipe, a socket, a redirected file) goes through the same buffers, written one after
 * the other at its current position; what has left them can no longer be read back.
 */
import { openSync, write, writeSync, readSync, ftruncateSync, fsyncSync, closeSync, constants } from 'node:fs';
import { mmap, munmap, view, PROT, MAP, O_TMPFILE, fromNodeError } from '../native/index.js';

const STAGE = 8 << 20;
const ALIGN = 4096;

interface Stage {
  addr: bigint;
  buf: Buffer;
  /** file offset of buf[0] */
  at: number;
  fill: number;
  /** the write of this buffer, when one is in progress */
  writing: Promise<void> | null;
  /**
   * Where the buffer starts again once its write is done (null while it is the one filling). Until then it keeps
   * describing the bytes being written, so they can be read back from it.
   */
  next: number | null;
}

/** Write buf[0, len) at `pos`, or at the descriptor's position when null (a stream). */
function writeAt(fd: number, buf: Buffer, len: number, pos: number | null, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (done: number) =>
      write(fd, buf, done, len - done, pos === null ? null : pos + done, (err, n) => {
        // a socket someone else made non-blocking: wait for room rather than fail
        if (err?.code === 'EAGAIN') setTimeout(step, 1, done);
        else if (err) reject(fromNodeError(err, 'write', pos === null ? path : `${path} at ${pos + done}`));
        else if (done + n < len) step(done + n);
        else resolve();
      });
    step(0);
  });
}

/** Opened with O_DIRECT where the filesystem takes it, else through the page cache. */
function openPreferDirect(open: (flags: number) => number, label: string): { fd: number; direct: boolean } {
  try {
    return { fd: open(constants.O_WRONLY | constants.O_DIRECT), direct: true };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw fromNodeError(e, 'open', label);
  }
  try {
    return { fd: open(constants.O_WRONLY), direct: false };
  } catch (e) {
    throw fromNodeError(e, 'open', label);
  }
}

/** How a stream is written: whether pagesnap opened (and closes) its descriptor, whether it can be fsynced. */
export interface StreamKind {
  ownsFd: boolean;
  regularFile: boolean;
}

export class OutputFile {
  private readonly stages: [Stage, Stage];
  private current = 0;
  private readFd: number | undefined;
  /** a stream's writes must reach it in order: each waits for the one before */
  private lastWrite: Promise<void> = Promise.resolve();
  /** bytes appended so far: the logical size of the file */
  size = 0;
  /** set by close(): the buffers are unmapped, and an append that was waiting must not touch them */
  private closed = false;

  /** A new file at `path`, which must not exist; `label` names it in errors. */
  static create(path: string, label = path, mode = 0o600): OutputFile {
    const { fd, direct } = openPreferDirect((flags) => openSync(path, flags | constants.O_CREAT | constants.O_EXCL, mode), label);
    return new OutputFile(fd, direct, path, label);
  }

  /**
   * A file with no name in `dir` (O_TMPFILE) until linkFd gives it one: however pagesnap ends, an unnamed file
   * leaves nothing behind. `label` names it in errors. Throws where the filesystem cannot make one.
   */
  static unnamed(dir: string, label: string, mode = 0o600): OutputFile {
    const { fd, direct } = openPreferDirect((flags) => openSync(dir, flags | O_TMPFILE, mode), label);
    return new OutputFile(fd, direct, `/proc/self/fd/${fd}`, label);
  }

  /** Bytes written one after another to `fd` (see StreamKind); `label` names it in errors. */
  static stream(fd: number, label: string, kind: StreamKind): OutputFile {
    return new OutputFile(fd, false, null, label, kind);
  }

  /**
   * `reopen`: a path that opens this same file again (null for a stream); `path`: its name in messages.
   */
  private constructor(
    readonly fd: number,
    readonly direct: boolean,
    private readonly reopen: string | null,
    readonly path: string,
    private readonly stream: StreamKind | null = null,
  ) {
    const stage = (): Stage => {
      const addr = mmap(STAGE, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
      return { addr, buf: view(addr, STAGE), at: 0, fill: 0, writing: null, next: null };
    };
    this.stages = [stage(), stage()];
  }

  /** Append `bytes`; resolves to the file offset where they start. Waits only when both buffers are being written. */
  async append(bytes: Uint8Array): Promise<number> {
    this.open();
    const start = this.size;
    let done = 0;
    while (done < bytes.length) {
      const s = this.stages[this.current]!;
      if (s.next !== null) {
        await s.writing;
        this.open();
        s.at = s.next;
        s.fill = 0;
        s.next = null;
      }
      const n = Math.min(bytes.length - done, STAGE - s.fill);
      s.buf.set(bytes.subarray(done, done + n), s.fill);
      s.fill += n;
      done += n;
      if (s.fill === STAGE) this.flush(s, STAGE);
    }
    this.size += bytes.length;
    return start;
  }

  /** Start writing stage `s` (its first `len` bytes, a multiple of ALIGN) and move on to the other stage. */
  private flush(s: Stage, len: number): void {
    s.writing = this.write(s, len).then(() => {
      s.writing = null;
    });
    // Awaited when the buffer is reused or the file finished; until then a failure (ENOSPC) must not count as
    // unhandled, which would end the process with a stack trace instead of the dump's one error line.
    s.writing.catch(() => {});
    this.current = 1 - this.current;
    this.stages[this.current]!.next = s.at + STAGE;
  }

  private write(s: Stage, len: number): Promise<void> {
    if (!this.stream) return writeAt(this.fd, s.buf, len, s.at, this.path);
    this.lastWrite = this.lastWrite.then(() => writeAt(this.fd, s.buf, len, null, this.path));
    return this.lastWrite;
  }

  /**
   * Read back bytes already appended. The two buffers hold the newest bytes, contiguously, until they are on disk;
   * everything before them is written. A range may span the file and both buffers. Null for bytes a stream has
   * sent on.
   */
  readAt(pos: number, len: number): Buffer | null {
    this.open();
    if (pos < 0 || pos + len > this.size) throw new RangeError(`${this.path}: read back [${pos}, ${pos + len}) beyond ${this.size} bytes`);
    const out = Buffer.alloc(len);
    let onDisk = pos + len;
    for (const s of this.stages) {
      if (s.fill === 0) continue;
      onDisk = Math.min(onDisk, s.at);
      const from = Math.max(pos, s.at);
      const to = Math.min(pos + len, s.at + s.fill);
      if (from < to) s.buf.copy(out, from - pos, from - s.at, to - s.at);
    }
    if (pos < onDisk) {
      if (this.reopen === null) return null;
      this.readFd ??= openSync(this.reopen, 'r');
      for (let got = 0; got < onDisk - pos; ) {
        const n = readSync(this.readFd, out, got, onDisk - pos - got, pos + got);
        if (n === 0) throw new RangeError(`${this.path}: read back at ${pos + got}: end of file`);
        got += n;
      }
    }
    return out;
  }

  private open(): void {
    if (this.closed) throw new Error(`${this.path}: the output is closed`);
  }

  /**
   * Write what is left, then `patch` over bytes written earlier (a header that learned more by the end), cut the
   * file to its exact size, fsync. Returns the size.
   */
  async finish(patch?: { at: number; bytes: Uint8Array }): Promise<number> {
    await Promise.all(this.stages.map((x) => x.writing));
    this.open();
    const s = this.stages[this.current]!;
    if (this.stream) return this.finishStream(s, patch);
    // a buffer waiting to start again holds bytes already written
    if (s.next === null && s.fill > 0) {
      const len = Math.ceil(s.fill / ALIGN) * ALIGN;
      s.buf.fill(0, s.fill, len);
      await writeAt(this.fd, s.buf, len, s.at, this.path);
    }
    if (patch) {
      // through the page cache: O_DIRECT would need an aligned block; fsync below flushes the inode either way
      const fd = this.direct ? openSync(this.reopen!, 'r+') : this.fd;
      try {
        writeSync(fd, patch.bytes, 0, patch.bytes.length, patch.at);
      } catch (e) {
        throw fromNodeError(e, 'write', this.path);
      } finally {
        if (fd !== this.fd) closeSync(fd);
      }
    }
    ftruncateSync(this.fd, this.size);
    fsyncSync(this.fd);
    return this.size;
  }

  private async finishStream(s: Stage, patch: unknown): Promise<number> {
    if (patch) throw new Error(`${this.path}: a stream cannot be written over`);
    if (s.next === null && s.fill > 0) await this.write(s, s.fill);
    if (this.stream!.regularFile) {
      try {
        fsyncSync(this.fd);
      } catch (e) {
        throw fromNodeError(e, 'fsync', this.path);
      }
    }
    return this.size;
  }

  /** Release the file descriptor and buffers (after finish, or to abandon the file). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled(this.stages.map((s) => s.writing));
    for (const s of this.stages) munmap(s.addr, STAGE);
    if (this.readFd !== undefined) closeSync(this.readFd);
    if (this.stream?.ownsFd !== false) closeSync(this.fd);
  }
}
