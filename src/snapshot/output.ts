/**
 * The snapshot's byte stream on disk. Bytes are appended into page-aligned staging buffers that are written with
 * O_DIRECT, two in turn (one fills while the other is written): a multi-gigabyte snapshot then neither evicts the
 * host's page cache nor leaves gigabytes of dirty pages to write back. Where the filesystem refuses O_DIRECT (tmpfs
 * on older kernels) the same buffers are written through the page cache. The last block is padded for O_DIRECT and
 * the file truncated to its exact size at the end.
 */
import { openSync, write, readSync, ftruncateSync, fsyncSync, closeSync, constants } from 'node:fs';
import { mmap, munmap, view, PROT, MAP, fromNodeError } from '../native/index.js';

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
}

function writeAt(fd: number, buf: Buffer, len: number, pos: number, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (done: number) =>
      write(fd, buf, done, len - done, pos + done, (err, n) => {
        if (err) reject(fromNodeError(err, 'write', `${path} at ${pos + done}`));
        else if (done + n < len) step(done + n);
        else resolve();
      });
    step(0);
  });
}

export class OutputFile {
  readonly fd: number;
  readonly direct: boolean;
  private readonly stages: [Stage, Stage];
  private current = 0;
  private readFd: number | undefined;
  /** bytes appended so far: the logical size of the file */
  size = 0;

  constructor(readonly path: string, mode = 0o600) {
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL;
    let fd: number;
    let direct = true;
    try {
      fd = openSync(path, flags | constants.O_DIRECT, mode);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw fromNodeError(e, 'open', path);
      direct = false;
      try {
        fd = openSync(path, flags, mode);
      } catch (e2) {
        throw fromNodeError(e2, 'open', path);
      }
    }
    this.fd = fd;
    this.direct = direct;
    const stage = (): Stage => {
      const addr = mmap(STAGE, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
      return { addr, buf: view(addr, STAGE), at: 0, fill: 0, writing: null };
    };
    this.stages = [stage(), stage()];
  }

  /** Append `bytes`; resolves to the file offset where they start. Waits only when both buffers are being written. */
  async append(bytes: Uint8Array): Promise<number> {
    const start = this.size;
    let done = 0;
    while (done < bytes.length) {
      const s = this.stages[this.current]!;
      if (s.writing) await s.writing;
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
    s.writing = writeAt(this.fd, s.buf, len, s.at, this.path).then(() => {
      s.writing = null;
    });
    const other = this.stages[1 - this.current]!;
    this.current = 1 - this.current;
    other.at = s.at + STAGE;
    other.fill = 0;
  }

  /**
   * Read back bytes already appended: from a staging buffer (kept intact while it is written, reused only after),
   * or from the file.
   */
  readAt(pos: number, len: number): Buffer {
    const out = Buffer.alloc(len);
    const s = this.stages.find((x) => pos >= x.at && pos + len <= x.at + x.fill);
    if (s) {
      s.buf.copy(out, 0, pos - s.at, pos - s.at + len);
      return out;
    }
    this.readFd ??= openSync(this.path, 'r');
    readSync(this.readFd, out, 0, len, pos);
    return out;
  }

  /** Write what is left, cut the file to its exact size, fsync. Returns the size. */
  async finish(): Promise<number> {
    const s = this.stages[this.current]!;
    await this.stages[1 - this.current]!.writing;
    if (s.fill > 0) {
      const len = Math.ceil(s.fill / ALIGN) * ALIGN;
      s.buf.fill(0, s.fill, len);
      await writeAt(this.fd, s.buf, len, s.at, this.path);
    }
    ftruncateSync(this.fd, this.size);
    fsyncSync(this.fd);
    return this.size;
  }

  /** Release the file descriptor and buffers (after finish, or to abandon the file). */
  async close(): Promise<void> {
    await Promise.allSettled(this.stages.map((s) => s.writing));
    for (const s of this.stages) munmap(s.addr, STAGE);
    if (this.readFd !== undefined) closeSync(this.readFd);
    closeSync(this.fd);
  }
}
