/**
 * Content placed without userfaultfd, before streaming starts: the copied-on-write pages of file mappings written
 * through /proc/PID/mem (which, like a debugger's write, copies the file page privately even where the mapping is
 * read-only), and the helpers that write shmem objects' pages into their memfds (object-fill.ts).
 */
import { openSync, writeSync, closeSync } from 'node:fs';
import { fromNodeError } from '../native/index.js';
import type { FrameDecoder } from '../snapshot/frame-decoder.js';
import type { RestoreHost } from './host.js';
import type { DirectWrite } from './plan.js';

/** Call `write(bytes, pageIndex)` for stored pages [src, src+count), a frame's piece at a time. */
export function eachPiece(d: FrameDecoder, src: number, count: number, write: (bytes: Buffer, at: number) => void): void {
  for (const sp of d.spans(src, count)) write(d.frame(sp.frame).subarray(sp.slot * d.pageSize, (sp.slot + sp.pages) * d.pageSize), sp.at);
}

export function writeAll(fd: number, b: Buffer, position: number, what: string): void {
  for (let done = 0; done < b.length; ) {
    try {
      done += writeSync(fd, b, done, b.length - done, position + done);
    } catch (e) {
      throw fromNodeError(e, 'write', `${what} at 0x${(position + done).toString(16)}`);
    }
  }
}

const ZEROS = Buffer.alloc(1 << 20);

/** Write pages into the host's memory through /proc/PID/mem (see DirectWrite). */
export function writePages(host: RestoreHost, decoder: FrameDecoder, writes: readonly DirectWrite[]): number {
  if (writes.length === 0) return 0;
  const ps = decoder.pageSize;
  let fd: number;
  try {
    fd = openSync(`/proc/${host.pid}/mem`, 'r+');
  } catch (e) {
    throw fromNodeError(e, 'open', `/proc/${host.pid}/mem`);
  }
  let pages = 0;
  try {
    for (const w of writes) {
      const at = Number(w.addr);
      if (w.src === null) {
        // (a zero run may be a gigabyte of huge pages: written from one small buffer)
        for (let k = 0; k < w.pages; k += ZEROS.length / ps) writeAll(fd, ZEROS.subarray(0, Math.min(ZEROS.length, (w.pages - k) * ps)), at + k * ps, 'the restore host');
      } else eachPiece(decoder, w.src, w.pages, (bytes, k) => writeAll(fd, bytes, at + k * ps, 'the restore host'));
      pages += w.pages;
    }
  } finally {
    closeSync(fd);
  }
  return pages;
}

