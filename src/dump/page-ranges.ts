/**
 * Runs of pages, apart and in address order, held as page numbers (an address over 4096, exact in a double): two
 * unboxed numbers a run. As objects of two BigInts they cost ~90 bytes a run, and a precopy of a process of 60000
 * regions held 120000 runs for the whole dump; V8 lets its heap grow to a multiple of what stays alive.
 */
import type { Addr } from '../native/index.js';
import { firstAbove } from '../snapshot/bisect.js';

/** The number of the page at `a` (a page-aligned address). */
export const pageOf = (a: Addr): number => Number(a >> 12n);

export class PageRanges {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];

  /** Runs given by address, in address order. */
  static from(runs: Iterable<{ start: Addr; end: Addr }>): PageRanges {
    const out = new PageRanges();
    for (const r of runs) out.push(pageOf(r.start), pageOf(r.end));
    return out;
  }

  get length(): number {
    return this.starts.length;
  }

  start(i: number): number {
    return this.starts[i]!;
  }

  end(i: number): number {
    return this.ends[i]!;
  }

  /** Add the run [start, end) after the last; one that begins where the last ends joins it. */
  push(start: number, end: number): void {
    const k = this.ends.length - 1;
    if (k >= 0 && this.ends[k] === start) this.ends[k] = end;
    else {
      this.starts.push(start);
      this.ends.push(end);
    }
  }

  /**
   * Add the run [start, end) where it falls in address order, once: runs given this way are distinct mappings, or
   * one given again (never overlapping another).
   */
  insert(start: number, end: number): void {
    const i = this.firstEndingAfter(start);
    if (i === this.starts.length) this.push(start, end);
    else if (this.starts[i] !== start || this.ends[i] !== end) {
      this.starts.splice(i, 0, start);
      this.ends.splice(i, 0, end);
    }
  }

  /** Index of the first run that ends after page `at`: length if none does. */
  firstEndingAfter(at: number): number {
    return firstAbove((i) => this.ends[i]!, this.ends.length, at);
  }

  /** Whether a run overlaps the pages [start, end). */
  overlaps(start: number, end: number): boolean {
    const i = this.firstEndingAfter(start);
    return i < this.starts.length && this.starts[i]! < end;
  }

  /** The parts of the runs within the pages [start, end). */
  within(start: number, end: number): PageRanges {
    const out = new PageRanges();
    for (let i = this.firstEndingAfter(start); i < this.starts.length && this.starts[i]! < end; i++) {
      out.starts.push(Math.max(this.starts[i]!, start));
      out.ends.push(Math.min(this.ends[i]!, end));
    }
    return out;
  }
}
