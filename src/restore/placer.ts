/**
 * Putting pages into the registered memory through userfaultfd, with the kernel's error rules applied
 * (kernel-semantics.md §3.5-3.9): partial progress (EAGAIN with bytes done) continues after what was placed;
 * EEXIST means the page is already there (the fault thread or another worker won the race): skip it; EAGAIN
 * with nothing done means a non-cooperative event is pending: the caller lets the fault thread drain it and
 * retries ('retry'); ESRCH means the process is gone and ENOENT that the range is no longer registered.
 * Used by the fill workers and the fault thread alike; each has its own Placer.
 *
 * Pages are named by plan page number; `delta` moves them to where they are now (see address-map.ts).
 */
import { UffdFiller, uffdWake, addressOf, errnoName, type Addr } from '../native/index.js';
import type { FrameDecoder } from '../snapshot/frame-decoder.js';
import { FormatError } from '../snapshot/format.js';
import { Op, type SegmentTable } from './segments.js';

export const STAT = {
  copied: 0, zeroed: 1, moved: 2, poisoned: 3, eexist: 4, eagain: 5, units: 6, faults: 7, damaged: 8,
} as const;
export const STAT_FIELDS = 9;

export type Outcome = 'ok' | 'gone' | 'unmapped' | 'retry';

const EAGAIN = 11;
const EEXIST = 17;
const ESRCH = 3;
const ENOENT = 2;

export interface Damage {
  frame: number;
  addr: Addr;
  pages: number;
  message: string;
}

export class Placer {
  private readonly ps: number;
  private readonly psn: bigint;
  private zeros = Buffer.alloc(0);
  private readonly io: UffdFiller;
  private huge = Buffer.alloc(0);

  constructor(
    private readonly uffd: number,
    private readonly decoder: FrameDecoder,
    private readonly table: SegmentTable,
    /** this thread's row of the shared statistics */
    private readonly stats: Float64Array,
    private readonly onDamage: (d: Damage) => void,
  ) {
    this.ps = decoder.pageSize;
    this.psn = BigInt(this.ps);
    this.io = new UffdFiller(uffd);
  }

  /**
   * Run a filling ioctl over [dst, dst+len) to the end, skipping pages that are already there (`step` bytes at
   * a time: a page, or a huge page). `op(dst, srcOffset, len)` issues one ioctl.
   */
  private drive(dst: Addr, len: number, step: number, stat: number, op: (dst: Addr, at: number, len: number) => void): Outcome {
    const r = this.io;
    let at = 0;
    while (at < len) {
      op(dst + BigInt(at), at, len - at);
      if (r.bytes > 0) {
        at += r.bytes;
        this.stats[stat]! += r.bytes;
        continue;
      }
      if (r.errno === 0) break;
      switch (r.errno) {
        case EEXIST:
          this.stats[STAT.eexist]! += 1;
          // Whoever placed it woke the faulting threads; wake again in case that placement used DONTWAKE.
          try {
            uffdWake(this.uffd, dst + BigInt(at), step);
          } catch {
            /* the range may have gone: nothing to wake */
          }
          at += step;
          break;
        case EAGAIN:
          this.stats[STAT.eagain]! += 1;
          return 'retry';
        case ESRCH:
          return 'gone';
        case ENOENT:
          return 'unmapped';
        default:
          throw new Error(`${errnoName(r.errno)} placing 0x${(dst + BigInt(at)).toString(16)}+${(len - at).toString(16)}`);
      }
    }
    return 'ok';
  }

  copy(dst: Addr, src: Buffer, step = this.ps): Outcome {
    const base = addressOf(src);
    return this.drive(dst, src.length, step, STAT.copied, (d, at, n) => this.io.copy(d, base + BigInt(at), n));
  }

  zero(dst: Addr, len: number, step = this.ps): Outcome {
    if (step > this.ps) {
      // hugetlb has no ZEROPAGE: copy a zeroed huge page
      if (this.zeros.length < step) this.zeros = Buffer.alloc(step);
      for (let at = 0; at < len; at += step) {
        const o = this.copy(dst + BigInt(at), this.zeros.subarray(0, step), step);
        if (o !== 'ok') return o;
      }
      return 'ok';
    }
    return this.drive(dst, len, step, STAT.zeroed, (d, _at, n) => this.io.zeropage(d, n));
  }

  poison(dst: Addr, len: number, step = this.ps): Outcome {
    return this.drive(dst, len, step, STAT.poisoned, (d, _at, n) => this.io.poison(d, n));
  }

  private addr(page: number, delta = 0): Addr {
    return BigInt(page + delta) * this.psn;
  }

  /**
   * Place pages [from, to) of segment s (page numbers). DATA goes a frame's piece at a time, straight from the
   * decoded frame; a damaged frame's pages are poisoned and reported, never placed as zeros.
   */
  placeSegment(s: number, from: number, to: number, delta = 0): Outcome {
    const t = this.table;
    const op = t.op[s]!;
    if (op === Op.ZERO) return this.zero(this.addr(from, delta), (to - from) * this.ps);
    if (op === Op.POISON) return this.poison(this.addr(from, delta), (to - from) * this.ps);
    const first = t.page[s]!;
    for (const sp of this.decoder.spans(t.src[s]! + (from - first), to - from)) {
      const at = this.addr(from + sp.at, delta);
      let frame: Buffer;
      try {
        frame = this.decoder.frame(sp.frame);
      } catch (e) {
        if (!(e instanceof FormatError)) throw e;
        this.damaged(sp.frame, at, sp.pages, e.message);
        const o = this.poison(at, sp.pages * this.ps);
        if (o !== 'ok') return o;
        continue;
      }
      const o = this.copy(at, frame.subarray(sp.slot * this.ps, (sp.slot + sp.pages) * this.ps));
      if (o !== 'ok') return o;
    }
    return 'ok';
  }

  private damaged(frame: number, addr: Addr, pages: number, message: string): void {
    this.stats[STAT.damaged]! += pages;
    this.onDamage({ frame, addr, pages, message });
  }

  /**
   * Place one whole huge page starting at page `first` (hugetlb: COPY takes whole huge pages only), assembled
   * from the segments [s0, s1) that fall inside it; pages in no segment are zero.
   */
  placeHuge(first: number, pages: number, s0: number, s1: number, delta = 0): Outcome {
    const bytes = pages * this.ps;
    if (this.huge.length < bytes) this.huge = Buffer.alloc(bytes);
    const buf = this.huge.subarray(0, bytes);
    buf.fill(0);
    const t = this.table;
    let poisoned = false;
    for (let s = s0; s < s1; s++) {
      const a = Math.max(first, t.page[s]!);
      const b = Math.min(first + pages, t.page[s]! + t.pages[s]!);
      if (a >= b) continue;
      if (t.op[s] === Op.POISON) poisoned = true;
      if (t.op[s] !== Op.DATA) continue;
      for (let p = a; p < b; p++) {
        const n = t.src[s]! + (p - t.page[s]!);
        try {
          this.decoder.page(n).copy(buf, (p - first) * this.ps);
        } catch (e) {
          if (!(e instanceof FormatError)) throw e;
          this.damaged(this.decoder.frameOf(n), this.addr(first, delta), pages, e.message);
          poisoned = true;
          break;
        }
      }
    }
    // A huge page is one unit: if any of it is lost, all of it is poisoned.
    if (poisoned) return this.poison(this.addr(first, delta), bytes, bytes);
    return this.copy(this.addr(first, delta), buf, bytes);
  }
}
