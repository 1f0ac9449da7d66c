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
import type { Region } from '../proc/index.js';
import { ZERO_PAGE, type PageRecord, type Segment } from './pages.js';
import type { WriteTracker, Range } from './track.js';

const PAGE = 4096n;

/** The pages a live pass copied, in address order: each page's number and its stored page (or ZERO_PAGE). */
export class LiveCopy {
  private pages = new Float64Array(1024);
  private refs = new Int32Array(1024);
  private n = 0;

  get size(): number {
    return this.n;
  }

  private push(page: number, ref: number): void {
    if (this.n === this.pages.length) {
      const p = new Float64Array(this.n * 2);
      p.set(this.pages);
      this.pages = p;
      const r = new Int32Array(this.n * 2);
      r.set(this.refs);
      this.refs = r;
    }
    this.pages[this.n] = page;
    this.refs[this.n++] = ref;
  }

  /** Where the live read of the region at `start` records its pages (they come in address order). */
  recorder(start: Addr): PageRecord {
    const first = Number(start / PAGE);
    return {
      data: (offset: number, _c: CaseId, ref: number) => this.push(first + offset, ref),
      zero: (offset: number) => this.push(first + offset, ZERO_PAGE),
      unreadable: () => {}, // (read frozen, like any page without a copy)
    };
  }

  /** Index of the first copied page at or after `page`. */
  private seek(page: number): number {
    let lo = 0;
    let hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.pages[mid]! < page) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Split the data segments of a region (or window) at `start` into pages to read and pages to take from the copy:
   * those in `clean` (not written since tracking began) that were copied.
   */
  reuse(start: Addr, segments: Segment[], clean: readonly Range[]): { segments: Segment[]; reused: number } {
    const first = Number(start / PAGE);
    const cleanPages = clean.map((r) => [Number(r.start / PAGE) - first, Number(r.end / PAGE) - first] as const);
    const out: Segment[] = [];
    let reused = 0;
    for (const s of segments) {
      if (s.verdict !== 'data' || s.reuse) {
        out.push(s);
        continue;
      }
      // runs alternate between "read" and "reuse", in address order
      let pos = s.offset;
      const end = s.offset + s.pages;
      const emitRead = (to: number) => {
        if (to > pos) out.push({ ...s, offset: pos, pages: to - pos });
        pos = Math.max(pos, to);
      };
      for (const [a, b] of cleanPages) {
        const from = Math.max(a, pos);
        const to = Math.min(b, end);
        if (from >= to) continue;
        let i = this.seek(first + from);
        for (let p = from; p < to; ) {
          // the copied pages from p on, one after another
          if (i < this.n && this.pages[i] === first + p) {
            let q = p;
            while (q < to && i < this.n && this.pages[i] === first + q) {
              q++;
              i++;
            }
            emitRead(p);
            out.push({ offset: p, pages: q - p, verdict: 'data', case: s.case, reuse: this.refs.slice(i - (q - p), i) });
            reused += q - p;
            pos = q;
            p = q;
          } else {
            p = i < this.n ? Math.min(to, this.pages[i]! - first) : to;
          }
        }
      }
      emitRead(end);
    }
    return { segments: out, reused };
  }
}

/** A target dumped with a precopy: its tracker and what its live pass copied. */
export interface Precopied {
  tracker: WriteTracker;
  live: LiveCopy;
}

/** The tracked ranges overlapping a region: the region takes copies only where its writes were tracked. */
export function trackedIn(p: Precopied, r: Pick<Region, 'start' | 'end'>): boolean {
  return p.tracker.ranges.some((t) => t.start < r.end && t.end > r.start);
}
