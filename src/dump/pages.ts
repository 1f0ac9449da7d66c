/**
 * Reading pages into the snapshot. A data segment is a run of pages the model said hold data; reading it records,
 * per page, a stored page, "zero" (read back all zero: recorded, not stored) or "unreadable" with the errno.
 * Process memory is read with process_vm_readv in batches of up to 8 MiB / 1024 ranges; shmem objects with pread
 * on the object (no hole is allocated, and the target's page tables are not touched).
 */
import { readSync, closeSync } from 'node:fs';
import { processVmReadv, processVmReadvAsync, preadPiecesAsync, scanPages, fromNodeError, IOV_MAX, type RemoteRange } from '../native/index.js';
import { openProc, memoryTask } from '../proc/index.js';
import { RefSink, type SnapshotWriter } from '../snapshot/writer.js';
import type { Refs } from '../snapshot/manifest.js';
import { RunSink, type RunTable, type VerdictPages } from '../snapshot/runs.js';
import type { CaseId, Verdict } from '../model/verdict.js';

export const BATCH_BYTES = 8 << 20;
/** Batches smaller than this are read on the main thread (see readBatch). */
const ASYNC_READ_BYTES = 1 << 20;

/** A planned run of a region or object: 'data' segments are read, the others recorded as they are. */
export interface Segment {
  offset: number;
  pages: number;
  verdict: Verdict;
  case: CaseId;
  /** why a whole segment is unreadable */
  reason?: string;
  /**
   * a 'data' segment already read (by a precopy while the process ran, and not written since): the stored page its
   * first page is, the others following it, or ZERO_PAGE when all read back zero. Recorded as planned, never read.
   */
  reuse?: number;
}

/** In Segment.reuse: pages read back all zero. */
export const ZERO_PAGE = -1;

/** Where a read records each page: stored (with its stored-page number), zero, or unreadable with why. */
export interface PageRecord {
  data(offset: number, c: CaseId, ref: number): void;
  zero(offset: number, c: CaseId): void;
  unreadable(offset: number, c: CaseId, reason: string): void;
}

/**
 * The final runs and refs of one region or object, built as its pages are resolved, in address order: planned
 * segments that are not read are recorded when the reading passes them, refs go to the file in blocks (RefSink).
 * Memory stays at one table block however large the region.
 */
export class Recorder implements PageRecord {
  private readonly runs: RunSink;
  private readonly refs: RefSink;
  private planned: Segment[] = [];
  private next = 0;

  constructor(writer: SnapshotWriter) {
    this.refs = new RefSink(writer);
    this.runs = new RunSink(writer);
  }

  /** The next planned segments, in address order after the previous ones; the non-data ones are recorded as given. */
  plan(segments: Segment[]): void {
    if (this.next > 1024) {
      this.planned = this.planned.slice(this.next);
      this.next = 0;
    }
    for (const s of segments) if (s.verdict !== 'data' || s.reuse !== undefined) this.planned.push(s);
  }

  /** Pages recorded so far, by verdict. */
  get pages(): VerdictPages {
    return this.runs.pages;
  }

  private catchUp(offset: number): void {
    while (this.next < this.planned.length && this.planned[this.next]!.offset < offset) {
      const s = this.planned[this.next++]!;
      if (s.reuse === undefined) this.runs.push(s.offset, s.pages, s.verdict, s.case, s.reason);
      else if (s.reuse === ZERO_PAGE) this.runs.push(s.offset, s.pages, 'zero', s.case);
      else {
        this.runs.push(s.offset, s.pages, 'data', s.case);
        this.refs.pushRun(s.reuse, s.pages);
      }
    }
  }

  data(offset: number, c: CaseId, ref: number): void {
    this.catchUp(offset);
    this.runs.push(offset, 1, 'data', c);
    this.refs.push(ref);
  }

  zero(offset: number, c: CaseId): void {
    this.catchUp(offset);
    this.runs.push(offset, 1, 'zero', c);
  }

  unreadable(offset: number, c: CaseId, reason: string): void {
    this.catchUp(offset);
    this.runs.push(offset, 1, 'unreadable', c, reason);
  }

  /**
   * Record what is left; `build` makes the caller's record from the tables. The counts are final at once; so are
   * tables short enough to stay inline (most regions'), and then so is the record. Longer tables settle when their
   * last blocks are in the file, behind the frames still being compressed, so a caller that need not wait should
   * not (waiting at every region drains the compression pipeline). The promise is marked handled: held unawaited
   * meanwhile, a failure surfaces where it is finally awaited.
   */
  finish<T>(build: (tables: { runs: RunTable; refs: Refs }) => T): T | Promise<T> {
    this.catchUp(Infinity);
    const runs = this.runs.done();
    const refs = this.refs.done();
    if (!(runs instanceof Promise) && !(refs instanceof Promise)) return build({ runs, refs });
    const done = Promise.all([runs, refs]).then(([r, f]) => build({ runs: r, refs: f }));
    done.catch(() => {});
    return done;
  }
}

export interface PageCounters {
  bytesRead: number;
  zero: number;
  unreadable: number;
}

/** Zero-checks, hashes (one native call per batch) and stores pages read into a batch buffer. */
export class PageSink {
  private readonly hashes = new BigUint64Array(BATCH_BYTES / 4096);
  private readonly words = new Uint32Array(this.hashes.buffer);
  private readonly zero = new Uint8Array(BATCH_BYTES / 4096);
  private readonly refs = new Uint32Array(BATCH_BYTES / 4096);
  readonly counters: PageCounters = { bytesRead: 0, zero: 0, unreadable: 0 };

  constructor(private readonly writer: SnapshotWriter) {}

  /**
   * Take the pages in `buf`, one piece after another (`pages` of each: pages `first…` of its segment); record each
   * as stored or zero. One hashing call and one store per run of non-zero pages, whatever the pieces: pages written
   * here and there (a precopy's frozen pass) come as thousands of one-page pieces.
   */
  async put(buf: Buffer, pieces: readonly SinkPiece[]): Promise<void> {
    const ps = this.writer.pageSize;
    const total = pieces.reduce((n, p) => n + p.pages, 0);
    this.counters.bytesRead += total * ps;
    scanPages(buf, total, ps, this.writer.seed, this.hashes, this.zero);
    // the piece each page belongs to, walked in step with the pages
    let pi = 0;
    let base = 0;
    const pieceOf = (i: number) => {
      while (i >= base + pieces[pi]!.pages) base += pieces[pi++]!.pages;
      return pieces[pi]!;
    };
    let i = 0;
    while (i < total) {
      if (this.zero[i]) {
        const p = pieceOf(i);
        p.rec.zero(p.seg.offset + p.first + i - base, p.seg.case);
        this.counters.zero++;
        i++;
        continue;
      }
      let j = i + 1;
      while (j < total && !this.zero[j]) j++;
      await this.writer.store(buf.subarray(i * ps, j * ps), j - i, this.words.subarray(2 * i, 2 * j), this.refs, 0);
      for (let k = i; k < j; k++) {
        const p = pieceOf(k);
        p.rec.data(p.seg.offset + p.first + k - base, p.seg.case, this.refs[k - i]!);
      }
      i = j;
    }
  }

  unreadable(seg: Segment, page: number, reason: string, rec: PageRecord): void {
    rec.unreadable(seg.offset + page, seg.case, reason);
    this.counters.unreadable++;
  }
}

/** Pages `first…` of a segment, `pages` of them, for PageSink.put, and where they are recorded. */
export interface SinkPiece {
  pages: number;
  seg: Segment;
  first: number;
  rec: PageRecord;
}

/** A region's (or window's) data segments to read, from `start`, and the recorder its pages go to. */
export interface RegionRead {
  start: bigint;
  segments: Segment[];
  rec: PageRecord;
}

interface Piece<I = RegionRead> {
  item: I;
  seg: Segment;
  /** first page of the piece within the segment */
  first: number;
  pages: number;
}

/**
 * How to read another process's memory. process_vm_readv is fastest but cannot read pages the process itself
 * may not read (PROT_NONE, case P2); /proc/PID/mem can (FOLL_FORCE). Either reads only what the model called
 * data, so no hole is ever populated in the target.
 */
export class ProcessMemory {
  private memFd: number | null = null;
  /** the task process_vm_readv names: one of its threads once the main one has exited */
  readonly task: number;

  constructor(readonly pid: number) {
    this.task = memoryTask(pid);
  }

  /** Bytes read into `buf` from the ranges in order; stops short at the first page that cannot be read. */
  readv(buf: Buffer, remote: RemoteRange[], viaMem: boolean): number {
    if (!viaMem) return processVmReadv(this.task, [buf], remote);
    let got = 0;
    for (const r of remote) {
      let done = 0;
      while (done < r.len) {
        let n: number;
        try {
          n = readSync(this.mem(), buf, got + done, r.len - done, Number(r.addr) + done);
        } catch (e) {
          if (got + done > 0) return got + done;
          throw fromNodeError(e, 'pread', `/proc/${this.pid}/mem`);
        }
        if (n === 0) return got + done;
        done += n;
      }
      got += r.len;
    }
    return got;
  }

  private mem(): number {
    this.memFd ??= openProc(this.pid, 'mem');
    return this.memFd;
  }

  close(): void {
    if (this.memFd !== null) closeSync(this.memFd);
    this.memFd = null;
  }
}

/**
 * Read a batch: `remote` into `buf`, as two process_vm_readv calls in flight at once on other threads (one thread
 * does not reach the memory bandwidth), or here when it is short. Bytes read up to the first unreadable page, as one
 * call would return.
 */
async function readBatch(pid: number, buf: Buffer, remote: RemoteRange[], pageSize: number): Promise<number> {
  // A call on another thread costs ~90 µs more than one here: worth it only when the read is long.
  if (buf.length < ASYNC_READ_BYTES) return processVmReadv(pid, [buf], remote);
  const half = Math.floor(buf.length / 2 / pageSize) * pageSize;
  const a: RemoteRange[] = [];
  const b: RemoteRange[] = [];
  let at = 0;
  for (const r of remote) {
    if (at + r.len <= half) a.push(r);
    else if (at >= half) b.push(r);
    else {
      a.push({ addr: r.addr, len: half - at });
      b.push({ addr: r.addr + BigInt(half - at), len: r.len - (half - at) });
    }
    at += r.len;
  }
  // (both settle before this does: a half still in flight would write into a buffer its caller has moved on from)
  const [x, y] = await Promise.allSettled([processVmReadvAsync(pid, buf.subarray(0, half), a), processVmReadvAsync(pid, buf.subarray(half), b)]);
  if (x.status === 'rejected') throw x.reason;
  if (x.value < half) return x.value;
  if (y.status === 'rejected') throw y.reason;
  return half + y.value;
}

/** A batch whose read has started: its pieces, its buffer, and what the read gives. */
interface InFlight<I, R> {
  pieces: Piece<I>[];
  buf: Buffer;
  got: Promise<R>;
}

/**
 * The data segments of `items` still to read (not taken from a copy), cut into batches of a buffer's pages (and at
 * most `maxPieces` pieces), two in flight: a batch's read is started into one buffer while the batch before, in the
 * other, is finished (zero-checked, hashed and stored). Batches are finished in order.
 */
async function readInBatches<I extends { segments: readonly Segment[] }, R>(
  items: readonly I[], bufs: readonly [Buffer, Buffer], pageSize: number, maxPieces: number,
  start: (pieces: Piece<I>[], buf: Buffer) => Promise<R>, finish: (batch: InFlight<I, R>) => Promise<void>,
): Promise<void> {
  const maxPages = Math.floor(bufs[0].length / pageSize);
  let batch: Piece<I>[] = [];
  let batchPages = 0;
  let turn: 0 | 1 = 0;
  let inFlight: InFlight<I, R> | null = null;
  const flush = async () => {
    const next = { pieces: batch, buf: bufs[turn], got: start(batch, bufs[turn]) };
    turn = turn === 0 ? 1 : 0;
    batch = [];
    batchPages = 0;
    try {
      if (inFlight) await finish(inFlight);
    } catch (e) {
      // (the next batch's read, on another thread, is into a buffer the caller reuses once this returns)
      await next.got.catch(() => {});
      throw e;
    }
    inFlight = next;
  };
  for (const item of items) for (const seg of item.segments) {
    if (seg.verdict !== 'data' || seg.reuse !== undefined) continue;
    for (let first = 0; first < seg.pages; ) {
      const take = Math.min(seg.pages - first, maxPages - batchPages);
      batch.push({ item, seg, first, pages: take });
      batchPages += take;
      first += take;
      if (batchPages === maxPages || batch.length === maxPieces) await flush();
    }
  }
  if (batch.length) await flush();
  if (inFlight) await finish(inFlight);
}

/**
 * Read the data segments of regions, batching across segments and regions (a process of 60000 one-page regions
 * would otherwise pay a system call for each). Two buffers: while one batch is zero-checked, hashed and stored, the
 * next is read on another thread. `viaMem` for regions without read permission.
 */
export async function readProcessSegments(mem: ProcessMemory, items: readonly RegionRead[], sink: PageSink, bufs: readonly [Buffer, Buffer], viaMem = false, pageSize = 4096): Promise<void> {
  const ps = BigInt(pageSize);
  const errno = (e: unknown) => (e as { code?: string }).code ?? 'EIO';
  const remoteOf = (pieces: Piece[], skip: number) => pieces.map((p, k) => {
    const from = p.first + (k === 0 ? skip : 0);
    return { addr: p.item.start + BigInt(p.seg.offset + from) * ps, len: (p.first + p.pages - from) * pageSize };
  });
  const bytes = (remote: RemoteRange[]) => remote.reduce((n, r) => n + r.len, 0);

  /** Read one page alone: the way to tell the page a batch stopped at from a batch that stopped early. */
  const readOne = (buf: Buffer, p: Piece, page: number): string | null => {
    const one = [{ addr: p.item.start + BigInt(p.seg.offset + page) * ps, len: pageSize }];
    let why: string;
    try {
      if (mem.readv(buf, one, viaMem) === pageSize) return null;
      why = 'EFAULT';
    } catch (e) {
      if (errno(e) === 'ESRCH') throw e;
      why = errno(e);
    }
    if (viaMem) return `/proc/${mem.pid}/mem: ${why}`;
    // process_vm_readv refuses what the process may not read itself; /proc/PID/mem reads it (FOLL_FORCE).
    try {
      if (mem.readv(buf, one, true) === pageSize) return null;
    } catch (e) {
      return `process_vm_readv: ${why}, /proc/${mem.pid}/mem: ${errno(e)}`;
    }
    return `process_vm_readv: ${why}`;
  };

  /** Any failure but the process's end reads as nothing read: the pages are then tried one by one. */
  const settle = (e: unknown) => (errno(e) === 'ESRCH' ? { gone: e } : 0);
  const start = (pieces: Piece[], buf: Buffer): Promise<number | { gone: unknown }> => {
    const remote = remoteOf(pieces, 0);
    const into = buf.subarray(0, bytes(remote));
    if (!viaMem) return readBatch(mem.task, into, remote, pageSize).then((n) => n, settle);
    try {
      return Promise.resolve(mem.readv(into, remote, true));
    } catch (e) {
      return Promise.resolve(settle(e));
    }
  };

  /** Take a batch's pages; where its read stopped short, find the page that stopped it and read on from there. */
  const finish = async ({ pieces, buf, got: first }: InFlight<RegionRead, number | { gone: unknown }>) => {
    // cursor: the first page not yet resolved is page `at` of pieces[pi]
    let pi = 0;
    let at = 0;
    const advance = (pages: number) => {
      at += pages;
      if (at === pieces[pi]!.pages) {
        pi++;
        at = 0;
      }
    };
    let read: number | { gone: unknown } = await first;
    while (pi < pieces.length) {
      if (typeof read !== 'number') throw read.gone;
      let full = Math.floor(read / pageSize);
      const got: SinkPiece[] = [];
      while (full > 0) {
        const p = pieces[pi]!;
        const take = Math.min(p.pages - at, full);
        got.push({ pages: take, seg: p.seg, first: p.first + at, rec: p.item.rec });
        full -= take;
        advance(take);
      }
      if (got.length) await sink.put(buf, got);
      if (pi === pieces.length) break;
      const p = pieces[pi]!;
      const why = readOne(buf, p, p.first + at);
      if (why === null) await sink.put(buf, [{ pages: 1, seg: p.seg, first: p.first + at, rec: p.item.rec }]);
      else sink.unreadable(p.seg, p.first + at, why, p.item.rec);
      advance(1);
      if (pi === pieces.length) break;
      const remote = remoteOf(pieces.slice(pi), at);
      try {
        read = mem.readv(buf.subarray(0, bytes(remote)), remote, viaMem);
      } catch (e) {
        read = settle(e);
      }
    }
  };

  await readInBatches(items, bufs, pageSize, IOV_MAX, start, finish);
}

/** A piece of an object's data segment. */
type ObjectPiece = Piece<unknown>;

/**
 * Read data segments of an object of `size` bytes through its fd (pread: no hole allocation, target untouched), a
 * buffer's worth of pieces in one native call on another thread while the previous buffer is stored: a precopy's
 * frozen pass reads thousands of pages written here and there (PostgreSQL's buffers: ~8000 pieces), and a pread and a
 * store of each had cost the main thread ~11 µs a piece. The last page may run past the end of the object (a SysV
 * segment of 56 bytes, any file): a mapping reads zeros there, and so does the snapshot.
 */
export async function readObjectSegments(fd: number, size: number, segments: Segment[], sink: PageSink, rec: PageRecord, bufs: readonly [Buffer, Buffer], pageSize = 4096): Promise<void> {
  const start = (pieces: ObjectPiece[], buf: Buffer) => {
    const at = new BigUint64Array(2 * pieces.length);
    pieces.forEach((p, k) => {
      at[2 * k] = BigInt((p.seg.offset + p.first) * pageSize);
      at[2 * k + 1] = BigInt(p.pages * pageSize);
    });
    return preadPiecesAsync(fd, buf, at);
  };
  /** Store what a batch read; what came back short is read piece by piece, to learn why. */
  const finish = async ({ pieces, buf, got }: InFlight<unknown, number>) => {
    let left = Math.floor((await got) / pageSize);
    const whole: SinkPiece[] = [];
    const short: ObjectPiece[] = [];
    for (const p of pieces) {
      const n = Math.min(p.pages, left);
      left -= n;
      if (n > 0) whole.push({ seg: p.seg, first: p.first, pages: n, rec });
      if (n < p.pages) short.push({ ...p, first: p.first + n, pages: p.pages - n });
    }
    if (whole.length) await sink.put(buf, whole);
    for (const p of short) {
      const { full, reason } = readPieceSync(fd, size, p, buf, pageSize);
      if (full > 0) await sink.put(buf, [{ seg: p.seg, first: p.first, pages: full, rec }]);
      for (let x = full; x < p.pages; x++) sink.unreadable(p.seg, p.first + x, reason, rec);
    }
  };
  await readInBatches([{ segments }], bufs, pageSize, Infinity, start, finish);
}

/**
 * pread a piece into `buf`: how many of its pages came whole, and why not the rest. Past the end of the object the
 * last page reads as zeros; short of it, the object shrank.
 */
function readPieceSync(fd: number, size: number, p: ObjectPiece, buf: Buffer, pageSize: number): { full: number; reason: string } {
  const want = p.pages * pageSize;
  const from = (p.seg.offset + p.first) * pageSize;
  let got = 0;
  let reason = '';
  while (got < want) {
    let n: number;
    try {
      n = readSync(fd, buf, got, want - got, from + got);
    } catch (e) {
      reason = `pread: ${(e as NodeJS.ErrnoException).code}`;
      break;
    }
    if (n === 0) {
      if (from + got >= size) {
        const pageEnd = Math.min(want, Math.ceil(got / pageSize) * pageSize);
        buf.fill(0, got, pageEnd);
        got = pageEnd;
      }
      if (got < want) reason = 'pread: end of file (the object shrank)';
      break;
    }
    got += n;
  }
  return { full: Math.floor(got / pageSize), reason };
}
