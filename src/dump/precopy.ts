/**
 * `dump --precopy`: most of a process's memory is read while it runs, so that it is frozen only for what it writes
 * meanwhile. Its writes are tracked first (WriteTracker), then every data page of the tracked memory is read and
 * stored (the live pass); frozen, the dump plans every region from scratch as usual, and a data page that was copied
 * and has not been written since is recorded as that copy instead of being read again. A page written meanwhile is
 * read frozen, and its earlier copy stays in the file unreferenced. Nothing is decided from the live pass but what
 * a page held: which pages hold data is the frozen plan's to say.
 */
import type { Addr } from '../native/index.js';
import type { CaseId } from '../model/verdict.js';
import type { Region, PagemapRegion } from '../proc/index.js';
import { ZERO_PAGE, type PageRecord, type Segment } from './pages.js';
import type { WriteTracker } from './track.js';
import { pageOf, type PageRanges } from './page-ranges.js';
import { firstAbove } from '../snapshot/bisect.js';

/**
 * The pages a live pass copied, in address order, as runs: pages one after another stored one after another (or all
 * read zero). A run costs 16 bytes; the index stops taking pages at MAX_RUNS (64 MiB), past which pages are simply
 * read frozen: pagesnap's memory stays bounded whatever the target's.
 */
export class LiveCopy {
  static readonly MAX_RUNS = 1 << 22;
  private first = new Float64Array(1024);
  private count = new Int32Array(1024);
  private ref = new Int32Array(1024);
  private n = 0;

  /** The index is full: copy no more (what is not copied is read frozen). */
  get full(): boolean {
    return this.n >= LiveCopy.MAX_RUNS;
  }

  private push(page: number, ref: number): void {
    const k = this.n - 1;
    if (k >= 0 && this.first[k]! + this.count[k]! === page && (ref === ZERO_PAGE ? this.ref[k] === ZERO_PAGE : this.ref[k] !== ZERO_PAGE && this.ref[k]! + this.count[k]! === ref)) {
      this.count[k]!++;
      return;
    }
    if (this.full) return;
    if (this.n === this.first.length) {
      const grow = <T extends Float64Array | Int32Array>(a: T): T => {
        const b = new (a.constructor as new (n: number) => T)(a.length * 2);
        b.set(a);
        return b;
      };
      [this.first, this.count, this.ref] = [grow(this.first), grow(this.count), grow(this.ref)];
    }
    this.first[this.n] = page;
    this.count[this.n] = 1;
    this.ref[this.n++] = ref;
  }

  /** Where the live read of the region at `start` records its pages (they come in address order). */
  recorder(start: Addr): PageRecord {
    const first = pageOf(start);
    return {
      data: (offset: number, _c: CaseId, ref: number) => this.push(first + offset, ref),
      zero: (offset: number) => this.push(first + offset, ZERO_PAGE),
      unreadable: () => {}, // (read frozen, like any page without a copy)
    };
  }

  /** Index of the first run that ends after `page`. */
  private seek(page: number): number {
    return firstAbove((i) => this.first[i]! + this.count[i]!, this.n, page);
  }

  /**
   * Split the data segments of a region (or window) at `start` into pages to read and pages to take from the copy:
   * those in `clean` (not written since tracking began) that were copied.
   */
  reuse(start: Addr, segments: Segment[], clean: PageRanges): { segments: Segment[]; reused: number } {
    const base = pageOf(start);
    // segments and clean runs are both in address order: one pass over each (a busy process leaves thousands of
    // clean runs, a region can have thousands of segments)
    const out: Segment[] = [];
    let reused = 0;
    let ci = 0;
    for (const s of segments) {
      if (s.verdict !== 'data' || s.reuse !== undefined) {
        out.push(s);
        continue;
      }
      // pieces to read and to reuse, in address order
      let pos = s.offset;
      const end = s.offset + s.pages;
      while (ci < clean.length && clean.end(ci) - base <= pos) ci++;
      for (let k = ci; k < clean.length && clean.start(k) - base < end; k++) {
        const from = Math.max(clean.start(k) - base, pos);
        const to = Math.min(clean.end(k) - base, end);
        for (let i = this.seek(base + from); i < this.n; i++) {
          const a = Math.max(from, this.first[i]! - base);
          const b = Math.min(to, this.first[i]! + this.count[i]! - base);
          if (a >= to) break;
          if (a >= b) continue;
          if (a > pos) out.push({ ...s, offset: pos, pages: a - pos });
          // (a run is all zero, or pages stored one after another: one number says where each is)
          const r = this.ref[i]!;
          out.push({ offset: a, pages: b - a, verdict: 'data', case: s.case, reuse: r === ZERO_PAGE ? r : r + (a + base - this.first[i]!) });
          reused += b - a;
          pos = b;
        }
      }
      if (end > pos) out.push({ ...s, offset: pos, pages: end - pos });
    }
    return { segments: out, reused };
  }
}

/** A target dumped with a precopy: its tracker and what its live pass copied. */
export interface Precopied {
  tracker: WriteTracker;
  live: LiveCopy;
  /** the process's start time (ProcStat.startTime): the copy is of that process, not of another given its pid since */
  startTime: number;
}

/**
 * The pieces of the data segments of a region (or window) at `start` that lie in `runs` (address order): what a
 * live pass copies, since only pages write-protected can later be taken from the copy.
 */
export function dataWithin(start: Addr, segments: readonly Segment[], runs: PageRanges): Segment[] {
  const base = pageOf(start);
  const out: Segment[] = [];
  for (const s of segments) {
    if (s.verdict !== 'data') continue;
    const end = s.offset + s.pages;
    for (let k = runs.firstEndingAfter(base + s.offset); k < runs.length; k++) {
      const a = Math.max(s.offset, runs.start(k) - base);
      const b = Math.min(end, runs.end(k) - base);
      if (a >= end) break;
      if (a < b) out.push({ ...s, offset: a, pages: b - a });
    }
  }
  return out;
}

/** Whether a region overlaps memory whose writes were tracked. */
export function trackedIn(p: Precopied, r: Pick<Region, 'start' | 'end'>): boolean {
  return p.tracker.ranges.overlaps(pageOf(r.start), pageOf(r.end));
}

/**
 * A region as the process has it: the write protection a precopy registered (VmFlags uw, the uffd-wp bit on its
 * pages) is pagesnap's, and is neither recorded nor decoded as the process's own. (The process cannot have registered
 * tracked memory itself: a range has one userfaultfd.)
 */
export function asFound(p: Precopied | undefined, r: Region): FoundRegion {
  if (!p || !r.vmFlags.includes('uw')) return r;
  // (private memory tracked, or a shared mapping of memory a precopy copied: see shared-copy.ts)
  const [a, b] = [pageOf(r.start), pageOf(r.end)];
  const shared = p.tracker.sharedRanges.overlaps(a, b);
  if (!p.tracker.ranges.overlaps(a, b) && !shared) return r;
  // (one list per distinct list, as the smaps parser gives them: decisions are remembered by list)
  let flags = withoutUw.get(r.vmFlags);
  if (!flags) withoutUw.set(r.vmFlags, (flags = r.vmFlags.filter((f) => f !== 'uw')));
  // (protecting a shared mapping put markers where it had no pte: see WriteTracker.trackShared)
  return shared ? { ...r, vmFlags: flags, ownWpMarkers: true } : { ...r, vmFlags: flags };
}

/** A region as the process has it (see asFound). */
export type FoundRegion = Region & Pick<PagemapRegion, 'ownWpMarkers'>;

const withoutUw = new WeakMap<readonly string[], string[]>();
