/**
 * Content placed without userfaultfd, before streaming starts: the copied-on-write pages of file mappings written
 * through /proc/PID/mem (which, like a debugger's write, copies the file page privately even where the mapping is
 * read-only), and the helpers that write shmem objects' pages into their memfds (object-fill.ts).
 */
import { openSync, writevSync, closeSync } from 'node:fs';
import { fromNodeError, PagesnapError, IOV_MAX } from '../native/index.js';
import type { FrameDecoder } from '../snapshot/frame-decoder.js';
import type { RestoreHost } from './host.js';
import type { DirectWrite } from './plan.js';

/**
 * Stored pages written into a file at their positions, buffers for consecutive positions gathered into one
 * pwritev: an object of deduplicated pages was one write(2) per page (a Python process's shared mmap of 32 MiB of
 * one page repeated: 8192 writes; its object filled in ~120 ms, gathered ~90). The buffers gathered are views of
 * decoded frames, so they are written out before the decoder decodes a frame (which may reuse one of theirs).
 * `limit`: where the file ends (a page past it is cut).
 */
export class PageWriter {
  private readonly bufs: Buffer[] = [];
  private at = 0;
  private len = 0;

  constructor(private readonly d: FrameDecoder, private readonly fd: number, private readonly what: string, private readonly limit = Infinity) {}

  /** Stored pages [src, src+count) at byte `position`, on. */
  pages(src: number, count: number, position: number): void {
    const ps = this.d.pageSize;
    for (const sp of this.d.spans(src, count)) {
      if (!this.d.holds(sp.frame)) this.flush();
      const at = position + sp.at * ps;
      const bytes = this.d.frame(sp.frame).subarray(sp.slot * ps, (sp.slot + sp.pages) * ps);
      const keep = Math.min(bytes.length, this.limit - at);
      if (keep > 0) this.add(bytes.subarray(0, keep), at);
    }
  }

  /** `bytes` (which the caller keeps unchanged until flush) at byte `position`. */
  add(bytes: Buffer, position: number): void {
    if (this.bufs.length > 0 && (position !== this.at + this.len || this.bufs.length === IOV_MAX)) this.flush();
    if (this.bufs.length === 0) this.at = position;
    this.bufs.push(bytes);
    this.len += bytes.length;
  }

  flush(): void {
    const bufs = this.bufs;
    for (let done = 0; done < this.len; ) {
      let n: number;
      try {
        n = writevSync(this.fd, bufs, this.at + done);
      } catch (e) {
        throw fromNodeError(e, 'write', `${this.what} at 0x${(this.at + done).toString(16)}`);
      }
      // (/proc/PID/mem of a process that has exited takes nothing, and says so by 0: never try again)
      if (n === 0) throw new PagesnapError(`write ${this.what} at 0x${(this.at + done).toString(16)}: nothing was written`, { code: 'EIO' });
      done += n;
      // a short write: on from the first byte not written
      while (bufs.length > 0 && n >= bufs[0]!.length) n -= bufs.shift()!.length;
      if (n > 0) bufs[0] = bufs[0]!.subarray(n);
    }
    bufs.length = 0;
    this.len = 0;
  }
}

const ZEROS = Buffer.alloc(1 << 20);

/** Write pages into the host's memory through /proc/PID/mem (see DirectWrite). */
export function writePages(host: RestoreHost, decoder: FrameDecoder, writes: readonly DirectWrite[]): number {
  if (writes.length === 0) return 0;
  const ps = decoder.pageSize;
  let fd: number | undefined;
  let pages = 0;
  try {
    try {
      fd = openSync(`/proc/${host.pid}/mem`, 'r+');
    } catch (e) {
      throw fromNodeError(e, 'open', `/proc/${host.pid}/mem`);
    }
    const out = new PageWriter(decoder, fd, 'the restore host');
    for (const w of writes) {
      const at = Number(w.addr);
      // (a zero run may be a gigabyte of huge pages: written from one small buffer)
      if (w.src === null) for (let k = 0; k < w.pages; k += ZEROS.length / ps) out.add(ZEROS.subarray(0, Math.min(ZEROS.length, (w.pages - k) * ps)), at + k * ps);
      else out.pages(w.src, w.pages, at);
      pages += w.pages;
    }
    out.flush();
  } catch (e) {
    throw host.alive ? e : host.gone('the restore host exited while pages were written into it');
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  return pages;
}
