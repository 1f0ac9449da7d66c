/**
 * Shmem objects filled from the snapshot before streaming. An object's stored data is cut into pieces at frame
 * boundaries; the main thread and the fill workers (idle until streaming starts) claim pieces one at a time and each
 * decodes and writes what it claims. Filled by the main thread alone, 512 MiB in a memfd took 1.40× as long to
 * restore as the same bytes in private memory (which the fill workers stream); shared, 1.12–1.16× (the kernel
 * serializes writes into one file: the decoding is what is shared).
 */
import type { Worker } from 'node:worker_threads';
import { fallocate, mmap, munmap, view, closeFd, sharedArray, MAP, PROT, type Addr } from '../native/index.js';
import { FrameDecoder } from '../snapshot/frame-decoder.js';
import { refsCount, type FrameIndex } from '../snapshot/manifest.js';
import type { SnapshotReader } from '../snapshot/reader.js';
import { PageWriter } from './direct.js';
import type { RestoreHost } from './host.js';
import type { ObjectPlan } from './plan.js';

/** Where an object's pages go: our descriptor of its memfd, or (hugetlbfs takes no write(2)) our mapping of it. */
interface Target {
  fd: number;
  base: Addr | null;
  size: number;
  name: string;
}

/**
 * An object's writes (object page, first stored page, pages: three numbers each, none crossing a frame) and its
 * pieces: piece i is writes [starts[i], starts[i+1]).
 */
interface Pieces {
  writes: Float64Array;
  starts: Uint32Array;
}

/** Pages a piece holds at least (fewer only at an object's end): one claim per MiB. */
const PIECE_PAGES = 256;
/** Objects with less stored data are filled by the main thread alone: sharing them costs more than it gains. */
const SHARED_MIN_PAGES = 4 * PIECE_PAGES;

/** Job state words (Int32Array): the next piece to claim, pieces finished, pages written; a status word per piece. */
const NEXT = 0;
const FINISHED = 1;
const PAGES = 2;
const STATUS = 3;
const WRITTEN = 1;
const FAILED = 2;

/** An object's pieces, posted to each fill worker: everything in shared memory, nothing copied. */
export interface ObjectJob {
  kind: 'object';
  paths: string[];
  frames: FrameIndex;
  pageSize: number;
  target: Target;
  writes: SharedArrayBuffer;
  starts: SharedArrayBuffer;
  state: SharedArrayBuffer;
}

/** Write piece i; returns its pages. */
function writePiece(d: FrameDecoder, t: Target, p: Pieces, i: number): number {
  const ps = d.pageSize;
  // the last page may run past the object's end: writing it whole would grow the object
  const out = t.base === null ? new PageWriter(d, t.fd, `object ${t.name}`, t.size) : null;
  let pages = 0;
  for (let w = p.starts[i]!; w < p.starts[i + 1]!; w++) {
    const offset = p.writes[3 * w]!;
    const src = p.writes[3 * w + 1]!;
    const n = p.writes[3 * w + 2]!;
    if (out) out.pages(src, n, offset * ps);
    else for (const sp of d.spans(src, n)) d.frame(sp.frame).copy(view(t.base! + BigInt((offset + sp.at) * ps), sp.pages * ps), 0, sp.slot * ps, (sp.slot + sp.pages) * ps);
    pages += n;
  }
  out?.flush();
  return pages;
}

export class ObjectFiller {
  /** pages written into objects before the one being filled */
  private written = 0;

  /**
   * `decoder`: the main thread's; `workers`: fill workers not yet streaming (none: the main thread fills alone);
   * `onProgress(pages)`: the pages written so far, called from the main thread as it goes.
   */
  constructor(
    private readonly reader: SnapshotReader,
    private readonly decoder: FrameDecoder,
    private readonly workers: readonly Pick<Worker, 'postMessage'>[],
    private readonly onProgress?: (pages: number) => void,
  ) {}

  /**
   * Fill an object's memfd (host fd `hostFd`) from the snapshot: data written, zero pages allocated (as they were),
   * holes left. `then(fd)` is given our descriptor of it before it is closed. Returns the pages written.
   */
  fill(host: RestoreHost, o: ObjectPlan, hostFd: number, then?: (fd: number) => void): number {
    const fd = host.fd(hostFd);
    const size = o.object.size;
    const base: Addr | null = o.hugePage ? mmap(size, PROT.READ | PROT.WRITE, MAP.SHARED, fd, 0) : null;
    try {
      const target: Target = { fd, base, size, name: o.object.name };
      const pieces = this.allocateAndCut(o, target);
      const pages = refsCount(o.object.refs);
      if (pages >= SHARED_MIN_PAGES && this.workers.length > 0) this.share(target, pieces);
      else for (let i = 0; i + 1 < pieces.starts.length; i++) writePiece(this.decoder, target, pieces, i);
      this.onProgress?.((this.written += pages));
      then?.(fd);
      return pages;
    } finally {
      if (base !== null) munmap(base, size);
      closeFd(fd);
    }
  }

  /** Allocate the object's zero runs (cheap: done here) and cut its data into pieces. */
  private allocateAndCut(o: ObjectPlan, t: Target): Pieces {
    const ps = this.reader.pageSize;
    const writes: number[] = [];
    const starts = [0];
    let inPiece = 0;
    for (const { run, offset, pages: n, src } of this.reader.stretches(o.object)) {
      if (run.verdict === 'zero' && t.base === null) fallocate(t.fd, 0, offset * ps, n * ps);
      if (run.verdict !== 'data') continue;
      for (const sp of this.decoder.spans(src!, n)) {
        writes.push(offset + sp.at, src! + sp.at, sp.pages);
        if ((inPiece += sp.pages) >= PIECE_PAGES) {
          starts.push(writes.length / 3);
          inPiece = 0;
        }
      }
    }
    if (inPiece > 0) starts.push(writes.length / 3);
    return { writes: sharedArray(Float64Array, writes), starts: sharedArray(Uint32Array, starts) };
  }

  /**
   * The pieces written by whoever claims them: this thread and every worker. Returns once all are written; a piece
   * a worker could not write is written again here, so that its error is the one thrown (with its errno). The
   * descriptor is not given back before no worker can write through it: on the way out, claims stop and the
   * pieces claimed are waited for.
   */
  private share(target: Target, p: Pieces): void {
    const n = p.starts.length - 1;
    const state = new Int32Array(new SharedArrayBuffer((STATUS + n) * 4));
    // (the frame index is in shared memory: posted with every object's job, never copied)
    const job: ObjectJob = {
      kind: 'object', ...this.reader.frameSource(), pageSize: this.decoder.pageSize,
      target, writes: p.writes.buffer as SharedArrayBuffer, starts: p.starts.buffer as SharedArrayBuffer, state: state.buffer as SharedArrayBuffer,
    };
    for (const w of this.workers) w.postMessage(job);
    const report = () => this.onProgress?.(this.written + Atomics.load(state, PAGES));
    try {
      claimPieces(state, n, (i) => {
        const pages = writePiece(this.decoder, target, p, i);
        report();
        return pages;
      });
    } finally {
      const claimed = Math.min(n, Atomics.exchange(state, NEXT, n));
      for (let done = Atomics.load(state, FINISHED); done < claimed; done = Atomics.load(state, FINISHED)) {
        Atomics.wait(state, FINISHED, done, 100);
        report();
      }
    }
    for (let i = 0; i < n; i++) if (state[STATUS + i] === FAILED) writePiece(this.decoder, target, p, i);
  }
}

/** Claim pieces until none are left; `write(i)` gives the pages of piece i it wrote, or null. Each claimed piece is finished. */
function claimPieces(state: Int32Array, n: number, write: (i: number) => number | null): void {
  for (let i = Atomics.add(state, NEXT, 1); i < n; i = Atomics.add(state, NEXT, 1)) {
    try {
      const pages = write(i);
      if (pages !== null) Atomics.add(state, PAGES, pages);
      Atomics.store(state, STATUS + i, pages === null ? FAILED : WRITTEN);
    } finally {
      Atomics.add(state, FINISHED, 1);
      Atomics.notify(state, FINISHED);
    }
  }
}

/** A fill worker's part of an object's job (see ObjectFiller.share). */
export function workObjectJob(job: ObjectJob): void {
  const state = new Int32Array(job.state);
  const p: Pieces = { writes: new Float64Array(job.writes), starts: new Uint32Array(job.starts) };
  const n = p.starts.length - 1;
  if (Atomics.load(state, NEXT) >= n) return; // all claimed already: the descriptor may be closed
  let decoder: FrameDecoder | undefined;
  try {
    claimPieces(state, n, (i) => {
      try {
        decoder ??= new FrameDecoder(job.paths, job.frames, job.pageSize, 2);
        return writePiece(decoder, job.target, p, i);
      } catch {
        return null; // written again by the main thread, which reports the error
      }
    });
  } finally {
    decoder?.close();
  }
}
