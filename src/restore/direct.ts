/**
 * Content placed without userfaultfd, before streaming starts: shmem objects' pages written into their memfds,
 * and the copied-on-write pages of file mappings written through /proc/PID/mem (which, like a debugger's
 * write, copies the file page privately even where the mapping is read-only).
 */
import { openSync, writeSync, closeSync } from 'node:fs';
import { fallocate, mmap, munmap, view, closeFd, MAP, PROT, fromNodeError, type Addr } from '../native/index.js';
import type { FrameDecoder } from '../snapshot/frame-decoder.js';
import type { SnapshotReader } from '../snapshot/reader.js';
import type { RestoreHost } from './host.js';
import type { DirectWrite, ObjectPlan } from './plan.js';

/** Call `write(bytes, pageIndex)` for stored pages [src, src+count), a frame's piece at a time. */
function eachPiece(d: FrameDecoder, src: number, count: number, write: (bytes: Buffer, at: number) => void): void {
  for (const sp of d.spans(src, count)) write(d.frame(sp.frame).subarray(sp.slot * d.pageSize, (sp.slot + sp.pages) * d.pageSize), sp.at);
}

function writeAll(fd: number, b: Buffer, position: number, what: string): void {
  for (let done = 0; done < b.length; ) {
    try {
      done += writeSync(fd, b, done, b.length - done, position + done);
    } catch (e) {
      throw fromNodeError(e, 'write', `${what} at 0x${(position + done).toString(16)}`);
    }
  }
}

/**
 * Fill an object's memfd (host fd `hostFd`) from the snapshot: data written, zero pages allocated (as they were),
 * holes left. `then(fd)` is given our descriptor of it before it is closed. Returns the pages written.
 */
export function fillObject(host: RestoreHost, reader: SnapshotReader, decoder: FrameDecoder, o: ObjectPlan, hostFd: number, then?: (fd: number) => void): number {
  const ps = reader.pageSize;
  let pages = 0;
  const fd = host.fd(hostFd);
  // hugetlbfs takes no write(2): map it here and copy in
  const base: Addr | null = o.hugePage ? mmap(o.object.size, PROT.READ | PROT.WRITE, MAP.SHARED, fd, 0) : null;
  try {
    for (const { run, offset, pages: n, src } of reader.stretches(o.object)) {
      if (run.verdict === 'data') {
        eachPiece(decoder, src!, n, (bytes, k) => {
          const at = (offset + k) * ps;
          if (base !== null) bytes.copy(view(base + BigInt(at), bytes.length));
          // the last page may run past the object's end: writing it whole would grow the object
          else writeAll(fd, bytes.subarray(0, Math.max(0, Math.min(bytes.length, o.object.size - at))), at, `object ${o.object.name}`);
        });
        pages += n;
      } else if (run.verdict === 'zero' && base === null) {
        fallocate(fd, 0, offset * ps, n * ps);
      }
    }
    then?.(fd);
  } finally {
    if (base !== null) munmap(base, o.object.size);
    closeFd(fd);
  }
  return pages;
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

