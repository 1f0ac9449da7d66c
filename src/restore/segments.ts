/**
 * What the page streamer places where, as flat arrays in SharedArrayBuffers so the fill workers and the fault
 * thread share one copy. A segment is a run of pages with one placement: DATA (stored pages src, src+1, ...),
 * ZERO (UFFDIO_ZEROPAGE) or POISON. Pages in no segment are holes: left empty, a fault there gets a zero page.
 *
 * Segments are grouped into units, the pieces fill workers claim: the segments of one 2 MiB-aligned block of
 * one region (of one huge page, where pages are larger). A unit's state word is 0 until a worker claims it, 1 while it is being filled, 2 once placed.
 * Page numbers (address / page size) are kept in Float64Array: exact far beyond any user address (2^53).
 */
import { sharedArray } from '../native/index.js';
import { firstAbove, lastAtOrBelow } from '../snapshot/bisect.js';

export const Op = { DATA: 1, ZERO: 2, POISON: 3 } as const;
export type OpCode = (typeof Op)[keyof typeof Op];

const UNIT_SHIFT = 9;
export const UNIT_PAGES = 1 << UNIT_SHIFT;

export const UNIT = { PENDING: 0, CLAIMED: 1, DONE: 2 } as const;

export interface SegmentTable {
  /** first page number of each segment, ascending */
  page: Float64Array;
  pages: Uint32Array;
  op: Uint8Array;
  /** DATA: the stored page of the segment's first page */
  src: Uint32Array;
  /** log2 of the pages one placement must cover (hugetlb: 9 for 2 MiB pages), else 0 */
  shift: Uint8Array;
  /** unit u holds segments [unitStart[u], unitStart[u+1]) */
  unitStart: Uint32Array;
  unitState: Int32Array;
}

/** The SharedArrayBuffers behind a table: what is posted to a worker. */
export type SharedTable = Record<keyof SegmentTable, SharedArrayBuffer>;

export function share(t: SegmentTable): SharedTable {
  return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, (v as { buffer: SharedArrayBuffer }).buffer])) as SharedTable;
}

export function attach(s: SharedTable): SegmentTable {
  return {
    page: new Float64Array(s.page), pages: new Uint32Array(s.pages), op: new Uint8Array(s.op), src: new Uint32Array(s.src),
    shift: new Uint8Array(s.shift), unitStart: new Uint32Array(s.unitStart), unitState: new Int32Array(s.unitState),
  };
}

/** The same table with every unit pending again (a second process to fill from the same plan). */
export function freshUnits(t: SegmentTable): SegmentTable {
  return { ...t, unitState: new Int32Array(new SharedArrayBuffer(t.unitState.length * 4)) };
}

export const unitCount = (t: SegmentTable) => t.unitState.length;

/** The segment holding page number p, or -1 (a hole). */
export function segmentAt(t: SegmentTable, p: number): number {
  let lo = 0;
  let hi = t.page.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (p < t.page[mid]!) hi = mid - 1;
    else if (p >= t.page[mid]! + t.pages[mid]!) lo = mid + 1;
    else return mid;
  }
  return -1;
}

/** The segments overlapping pages [from, to): [first, end). */
export function segmentsIn(t: SegmentTable, from: number, to: number): [number, number] {
  const lo = firstAbove((i) => t.page[i]! + t.pages[i]!, t.page.length, from);
  let end = lo;
  while (end < t.page.length && t.page[end]! < to) end++;
  return [lo, end];
}

/** The unit holding segment s. */
export function unitOf(t: SegmentTable, s: number): number {
  return lastAtOrBelow((u) => t.unitStart[u]!, t.unitState.length, s);
}

/**
 * Builds a table from segments pushed in ascending page order: merges what continues the previous segment,
 * splits at unit boundaries, and starts a new unit at each block or region change.
 */
export class SegmentBuilder {
  private page: number[] = [];
  private pages: number[] = [];
  private op: number[] = [];
  private src: number[] = [];
  private shift: number[] = [];
  private unitStart: number[] = [];
  private lastBlock = -1;
  private region = -1;
  /** pages by op, for the report */
  readonly counts = { data: 0, zero: 0, poison: 0 };

  /** `region` identifies the region (units never span two); `src` is the first stored page for DATA. */
  push(region: number, page: number, pages: number, op: OpCode, src = 0, shift = 0): void {
    if (op === Op.DATA) this.counts.data += pages;
    else if (op === Op.ZERO) this.counts.zero += pages;
    else this.counts.poison += pages;
    // a unit is a 2 MiB block, or one huge page when pages are bigger than that
    const unitPages = Math.max(UNIT_PAGES, 2 ** shift);
    while (pages > 0) {
      const block = Math.floor(page / unitPages);
      const n = Math.min(pages, (block + 1) * unitPages - page);
      const i = this.page.length - 1;
      const newUnit = block !== this.lastBlock || region !== this.region;
      if (!newUnit && i >= 0 && this.op[i] === op && this.shift[i] === shift && this.page[i]! + this.pages[i]! === page &&
        (op !== Op.DATA || this.src[i]! + this.pages[i]! === src)) {
        this.pages[i]! += n;
      } else {
        if (newUnit) this.unitStart.push(this.page.length);
        this.page.push(page);
        this.pages.push(n);
        this.op.push(op);
        this.src.push(src);
        this.shift.push(shift);
      }
      this.lastBlock = block;
      this.region = region;
      page += n;
      if (op === Op.DATA) src += n;
      pages -= n;
    }
  }

  build(): SegmentTable {
    const units = this.unitStart.length;
    return {
      page: sharedArray(Float64Array, this.page), pages: sharedArray(Uint32Array, this.pages), op: sharedArray(Uint8Array, this.op),
      src: sharedArray(Uint32Array, this.src), shift: sharedArray(Uint8Array, this.shift),
      unitStart: sharedArray(Uint32Array, [...this.unitStart, this.page.length]),
      unitState: new Int32Array(new SharedArrayBuffer(units * 4)),
    };
  }
}
