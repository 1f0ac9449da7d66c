/**
 * Reading a process's page tables through /proc/PID/pagemap, by two paths that must agree:
 * - scan: PAGEMAP_SCAN (6.7+) lists only the populated pages, so the cost follows what is mapped and present,
 *   not the virtual size; non-present entries (and present ones in uffd-wp VMAs) are then pread and decoded for
 *   what the categories do not say (swap type, marker kind, the uffd-wp bit);
 * - pread: the classic read of one u64 per virtual page, decoded in full. Used when the kernel lacks
 *   PAGEMAP_SCAN (ENOTTY) or when asked for.
 */
import { readSync, closeSync } from 'node:fs';
import {
  pagemapScan, PAGE_IS, NativeError, PagesnapError, mmap, munmap, view, PROT, MAP,
  type Addr, type ScanRegion,
} from '../native/index.js';
import { openProc, isAlive, exited } from './process.js';
import { kernelConfig, type SwapTypeLayout } from './kernel-config.js';
import { decodeEntry, detailOf, PM, type DecodeContext, type PageRun, type PageState, type PageDetail } from './page-state.js';
import type { RegionClass } from './region-kind.js';

export type PagemapMethod = 'scan' | 'pread';

const PAGE = 4096n;
const HUGE_PAGES = 512;
/** Entries per pread: 64 Ki entries (512 KiB) covers 256 MiB of address space and is 2 MiB aligned. */
const CHUNK = 65536;
/** Regions per PAGEMAP_SCAN call. */
const VEC_REGIONS = 4096;

/** What the scan reports back: presence, swap-likeness, zero page, huge mapping, guard (and FILE, see fileRule). */
const SCAN_RETURN = PAGE_IS.PRESENT | PAGE_IS.SWAPPED | PAGE_IS.PFNZERO | PAGE_IS.HUGE | PAGE_IS.GUARD;

/**
 * PAGE_IS_FILE costs a folio lookup per pte (5× the scan time on 1 GiB resident) and says something only in
 * private file and hugetlb mappings. In anonymous memory a present non-zero page is always anon; in a shared
 * file or shmem mapping it is always page cache.
 */
function fileRule(r: PagemapRegion): 'anon' | 'page-cache' | 'ask' {
  if (r.backing === 'anon') return 'anon';
  if (r.kind === 'shmem-shared' || r.kind === 'file-shared') return 'page-cache';
  return 'ask';
}

/** What a scan of region r asks the kernel to report. */
const scanReturn = (r: PagemapRegion) => (fileRule(r) === 'ask' ? SCAN_RETURN | PAGE_IS.FILE : SCAN_RETURN) | (r.ownWpMarkers ? PAGE_IS.WRITTEN : 0);

/** Regions up to this size are scanned ahead together (see Pagemap.prefetch). */
export const PREFETCH_PAGES = 512;

/**
 * The results of one scan over several regions (in address order), each region with those inside it: a result may
 * span regions (equal categories on both sides of a boundary), and is cut at each one's ends.
 */
export function* perRegion<R extends { start: Addr; end: Addr }>(regions: readonly R[], found: readonly ScanRegion[]): Generator<[R, ScanRegion[]]> {
  let k = 0;
  for (const r of regions) {
    while (k < found.length && found[k]!.end <= r.start) k++;
    const mine: ScanRegion[] = [];
    for (let m = k; m < found.length && found[m]!.start < r.end; m++) {
      const s = found[m]!;
      mine.push({ start: s.start > r.start ? s.start : r.start, end: s.end < r.end ? s.end : r.end, categories: s.categories });
    }
    yield [r, mine];
  }
}

/** The part of a region the reader needs: its range and what kind of memory it is. */
export interface PagemapRegion extends RegionClass {
  start: Addr;
  end: Addr;
  vmFlags: readonly string[];
  /**
   * The userfaultfd write protection of this shared mapping is the reader's own (a precopy tracking it; its VmFlags
   * given without uw): the markers it put where the process had no page table entry, still protected, read as none
   * without a look at each (as any uffd-wp marker outside a registered VMA does: see decodeRange).
   */
  ownWpMarkers?: boolean;
}

export interface PagemapOptions {
  /** 'auto' uses PAGEMAP_SCAN when the kernel has it. */
  method?: PagemapMethod | 'auto';
}

/** What pagemap shows to this process's credentials, learned once by reading our own zero page's entry. */
interface FrameVisibility {
  /** PFNs and swap frames are real; without CAP_SYS_ADMIN in the initial namespace they read as 0. */
  visible: boolean;
  /** PFN of the 4 KiB zero page (null when hidden). */
  zeroPfn: number | null;
}
let frames: FrameVisibility | undefined;

function probeFrames(): FrameVisibility {
  if (frames) return frames;
  const p = mmap(4096, PROT.READ, MAP.PRIVATE | MAP.ANONYMOUS);
  try {
    void view(p, 1)[0]; // read fault: maps the shared zero page
    const fd = openProc(process.pid, 'pagemap');
    try {
      const b = Buffer.alloc(8);
      readSync(fd, b, 0, 8, Number((p / PAGE) * 8n));
      const hi = b.readUInt32LE(4);
      const pfn = (hi & PM.FRAME_HI) * 0x1_0000_0000 + b.readUInt32LE(0);
      frames = (hi & PM.PRESENT) !== 0 && pfn !== 0 ? { visible: true, zeroPfn: pfn } : { visible: false, zeroPfn: null };
    } finally {
      closeSync(fd);
    }
  } finally {
    munmap(p, 4096);
  }
  return frames;
}

/** The work a reader did: what its cost is proportional to. */
export interface PagemapStats {
  scanCalls: number;
  /** pagemap entries read with pread (8 bytes each) */
  entriesRead: number;
}

export class Pagemap {
  readonly method: PagemapMethod;
  readonly stats: PagemapStats = { scanCalls: 0, entriesRead: 0 };
  readonly framesVisible: boolean;
  readonly swapTypes: SwapTypeLayout;
  private readonly fd: number;
  // (made for each process of a dump: not zero-filled, the kernel writes them before they are read; the pread
  // buffer only where pread is used)
  private readonly vec = Buffer.allocUnsafe(VEC_REGIONS * 24);
  private chunk: Buffer | null = null;
  private get buf(): Buffer {
    return (this.chunk ??= Buffer.allocUnsafe(CHUNK * 8));
  }
  /** scan results of small regions taken ahead, by start, each used once (see prefetch) */
  private readonly ahead = new Map<Addr, { end: Addr; found: ScanRegion[] }>();

  constructor(
    readonly pid: number,
    opts: PagemapOptions = {},
  ) {
    this.fd = openProc(pid, 'pagemap');
    this.framesVisible = probeFrames().visible;
    this.swapTypes = kernelConfig().swapTypes;
    const want = opts.method ?? 'auto';
    const scan = want !== 'pread' && this.scanSupported();
    if (want === 'scan' && !scan) {
      throw new PagesnapError('this kernel has no PAGEMAP_SCAN ioctl (Linux 6.7+)', { code: 'ENOTTY', hint: 'use --method pread' });
    }
    this.method = scan ? 'scan' : 'pread';
  }

  close(): void {
    closeSync(this.fd);
  }

  /**
   * A zero-length scan succeeds on kernels that have the ioctl; older ones answer ENOTTY.
   * PAGESNAP_NO_PAGEMAP_SCAN=1 makes this kernel look like one of those (to test and compare the fallback).
   */
  private scanSupported(): boolean {
    if (process.env.PAGESNAP_NO_PAGEMAP_SCAN === '1') return false;
    try {
      pagemapScan(this.fd, { start: 0n, end: 0n, returnMask: PAGE_IS.PRESENT }, Buffer.alloc(0));
      return true;
    } catch (e) {
      if (e instanceof NativeError && (e.code === 'ENOTTY' || e.code === 'EINVAL' || e.code === 'EOPNOTSUPP')) return false;
      throw this.wrap(e);
    }
  }

  private wrap(e: unknown): Error {
    if (e instanceof NativeError && (e.code === 'ESRCH' || e.code === 'ENOENT')) return exited(this.pid, e.code, e);
    // (PAGEMAP_SCAN of a process that has gone fails with ESRCH on some machines, EFAULT on others: same 6.18)
    if (e instanceof NativeError && !isAlive(this.pid)) return exited(this.pid, 'ESRCH', e);
    return e instanceof Error ? e : new Error(String(e));
  }

  private context(r: PagemapRegion): DecodeContext {
    return {
      swapTypes: this.swapTypes,
      framesVisible: this.framesVisible,
      zeroPfn: probeFrames().zeroPfn,
      anonymous: r.backing === 'anon',
      hugetlb: r.kind === 'hugetlb',
      writeProtected: r.vmFlags.includes('uw'),
    };
  }

  /** Raw pagemap entries for [start, end), as a view into a reused buffer (valid until the next call). */
  entries(start: Addr, end: Addr): BigUint64Array {
    const n = Number((end - start) / PAGE);
    const buf = n <= CHUNK ? this.buf : Buffer.alloc(n * 8);
    this.preadInto(buf, start, n);
    return new BigUint64Array(buf.buffer, buf.byteOffset, n);
  }

  private preadInto(buf: Buffer, start: Addr, n: number): void {
    this.stats.entriesRead += n;
    const bytes = n * 8;
    let got = 0;
    while (got < bytes) {
      let r: number;
      try {
        r = readSync(this.fd, buf, got, bytes - got, Number((start / PAGE) * 8n) + got);
      } catch (e) {
        throw this.wrap(e);
      }
      if (r === 0) {
        // EOF before the end: either past the user address space or the process is gone.
        if (!isAlive(this.pid)) throw exited(this.pid, 'ESRCH');
        buf.fill(0, got, bytes);
        return;
      }
      got += r;
    }
  }

  /**
   * PAGEMAP_SCAN over [start, end), resuming only while the vector comes back full, from
   * max(walk_end, end of the last region returned). Measured on 6.18: when the vector (longer than the kernel's
   * 512-entry bounce buffer) fills exactly as the walk reaches `end`, walk_end is left at the last internal flush,
   * up to 512 regions behind what was returned; resuming there would report those regions twice. Regions come
   * back in address order, complete up to their end, so nothing before the last region's end is missed. `all`:
   * pages must also have every category of `mask` (after flipping those of `inverted`).
   */
  scan(start: Addr, end: Addr, anyof: number, returnMask: number, all?: { mask: number; inverted?: number }): ScanRegion[] {
    const out: ScanRegion[] = [];
    let pos = start;
    while (pos < end) {
      let r;
      this.stats.scanCalls++;
      try {
        r = pagemapScan(this.fd, { start: pos, end, anyof, returnMask, ...all }, this.vec);
      } catch (e) {
        throw this.wrap(e);
      }
      for (const reg of r.regions) out.push(reg);
      if (!r.full) break;
      const lastEnd = r.regions[r.regions.length - 1]!.end;
      const next = r.walkEnd > lastEnd ? r.walkEnd : lastEnd;
      if (next <= pos || next > end) throw new Error(`PAGEMAP_SCAN resumed at 0x${next.toString(16)}, outside (0x${pos.toString(16)}, 0x${end.toString(16)}]`);
      pos = next;
    }
    return out;
  }

  /** The populated pages of a region as runs (pages without a page table entry are not listed). */
  runs(r: PagemapRegion): PageRun[] {
    if (this.method === 'pread') return this.runsByPread(r);
    const ahead = this.ahead.get(r.start);
    if (ahead) this.ahead.delete(r.start);
    const found = ahead?.end === r.end ? ahead.found : this.scan(r.start, r.end, PAGE_IS.PRESENT | PAGE_IS.SWAPPED, scanReturn(r));
    return this.decodeScan(r, found);
  }

  /**
   * Scan many small regions (address order) in a few PAGEMAP_SCAN calls instead of one each: a call costs ~9 µs,
   * and a process can have 60000 regions. Consecutive regions that ask the same of the scan share a call over their
   * whole span (the walk skips the gaps between them); the results are cut at region boundaries and kept for
   * runs(), which uses each once, so a second look (a retry) scans again.
   */
  prefetch(regions: readonly PagemapRegion[], maxPages = PREFETCH_PAGES): void {
    if (this.method !== 'scan') return;
    // (a large region between two small ones ends a group: its pages would be walked for nothing)
    const small = (r: PagemapRegion) => r.kind !== 'hugetlb' && r.kind !== 'vsyscall' && (r.end - r.start) / PAGE <= BigInt(maxPages);
    for (let i = 0; i < regions.length; ) {
      if (!small(regions[i]!)) {
        i++;
        continue;
      }
      const ret = scanReturn(regions[i]!);
      let j = i + 1;
      while (j < regions.length && small(regions[j]!) && scanReturn(regions[j]!) === ret) j++;
      if (j - i > 1) this.split(regions.slice(i, j), this.scan(regions[i]!.start, regions[j - 1]!.end, PAGE_IS.PRESENT | PAGE_IS.SWAPPED, ret));
      i = j;
    }
  }

  private split(regions: readonly PagemapRegion[], found: ScanRegion[]): void {
    for (const [r, mine] of perRegion(regions, found)) this.ahead.set(r.start, { end: r.end, found: mine });
  }

  private decodeScan(r: PagemapRegion, found: readonly ScanRegion[]): PageRun[] {
    const ctx = this.context(r);
    const out = new RunBuilder();
    const file = fileRule(r);
    for (const s of found) {
      const c = s.categories;
      const huge = (c & PAGE_IS.HUGE) !== 0;
      const present = (c & PAGE_IS.PRESENT) !== 0;
      if ((c & PAGE_IS.GUARD) !== 0) {
        out.push(s.start, s.end, 'guard', huge, false);
      } else if (!present && r.ownWpMarkers && (c & PAGE_IS.WRITTEN) === 0) {
        // (a marker, or a migration entry of a page, still protected: no entry to the process, an object page either
        // way; decoding each costs more than the rest of the region's scan)
        continue;
      } else if (present && !ctx.writeProtected) {
        const isFile = file === 'page-cache' || (file === 'ask' && (c & PAGE_IS.FILE) !== 0);
        const state: PageState = c & PAGE_IS.PFNZERO ? 'zero' : isFile ? 'file' : 'data';
        out.push(s.start, s.end, state, huge, false);
      } else {
        // Swapped-looking entries: only the raw frame tells swap from migration from a marker. Present entries in
        // uffd-wp VMAs: only the raw entry carries the uffd-wp bit.
        this.decodeRange(s.start, s.end, ctx, out, huge ? 'all' : 'none', c);
      }
    }
    return out.runs;
  }

  private runsByPread(r: PagemapRegion): PageRun[] {
    const ctx = this.context(r);
    const out = new RunBuilder();
    const huge: HugeMode = ctx.hugetlb ? 'all' : ctx.framesVisible ? 'guess' : 'none';
    // Chunks end on 2 MiB boundaries so a PMD-sized block is never split between two reads.
    let pos = r.start;
    while (pos < r.end) {
      const aligned = (pos / (PAGE * BigInt(CHUNK)) + 1n) * PAGE * BigInt(CHUNK);
      const end = aligned < r.end ? aligned : r.end;
      this.decodeRange(pos, end, ctx, out, huge, null);
      pos = end;
    }
    return out.runs;
  }

  private decodeRange(start: Addr, end: Addr, ctx: DecodeContext, out: RunBuilder, huge: HugeMode, categories: number | null): void {
    for (let pos = start; pos < end; ) {
      const stop = end - pos > PAGE * BigInt(CHUNK) ? pos + PAGE * BigInt(CHUNK) : end;
      const n = Number((stop - pos) / PAGE);
      this.preadInto(this.buf, pos, n);
      const w = new Uint32Array(this.buf.buffer, this.buf.byteOffset, n * 2);
      const pmd = huge === 'guess' ? pmdMappedGuess(w, n, pos) : null;
      for (let i = 0; i < n; i++) {
        const hi = w[2 * i + 1]!;
        const lo = w[2 * i]!;
        if ((hi | lo) === 0 && categories === null) continue;
        const d = decodeEntry(hi, lo, ctx);
        // The scan said this page is populated; a pread that shows nothing means pagemap hides the kind (hugetlb).
        const state = d.state === 'none' ? (categories === null ? null : 'swap-unknown') : d.state;
        // (a uffd-wp marker outside a registered VMA is a leftover the kernel drops at the next touch: a hole)
        if (state === null || (state === 'uffd-wp-marker' && !ctx.writeProtected)) continue;
        const isHuge = huge === 'all' ? true : pmd ? pmd[i] === 1 : false;
        out.pushPage(pos + BigInt(i) * PAGE, state, isHuge, d.uffdWp && ctx.writeProtected);
      }
      pos = stop;
    }
  }

  /** Every page of [start, end) decoded, for `inspect --pages`. */
  details(start: Addr, end: Addr, r: PagemapRegion): PageDetail[] {
    const ctx = this.context(r);
    const cats = new Map<bigint, number>();
    if (this.method === 'scan') {
      for (const s of this.scan(start, end, PAGE_IS.PRESENT | PAGE_IS.SWAPPED, SCAN_RETURN | PAGE_IS.FILE)) {
        for (let a = s.start; a < s.end; a += PAGE) cats.set(a, s.categories);
      }
    }
    const raw = this.entries(start, end);
    const w = new Uint32Array(raw.buffer, raw.byteOffset, raw.length * 2);
    const pmd = !ctx.hugetlb && this.method === 'pread' && ctx.framesVisible ? pmdMappedGuess(w, raw.length, start) : null;
    const out: PageDetail[] = [];
    for (let i = 0; i < raw.length; i++) {
      const addr = start + BigInt(i) * PAGE;
      const c = this.method === 'scan' ? (cats.get(addr) ?? 0) : null;
      const huge = ctx.hugetlb ? raw[i] !== 0n : c !== null ? (c & PAGE_IS.HUGE) !== 0 : pmd?.[i] === 1;
      const d = detailOf(addr, raw[i]!, ctx, huge, c);
      if (c !== null && c & PAGE_IS.PFNZERO) d.state = 'zero';
      out.push(d);
    }
    return out;
  }
}

/** How to tell PMD-mapped pages: the scan said so for the whole range, never, or by looking at the PFNs. */
type HugeMode = 'all' | 'none' | 'guess';

/**
 * Without PAGEMAP_SCAN, a PMD mapping shows as 512 present entries with consecutive PFNs starting on a 512-aligned
 * PFN at a 2 MiB-aligned address. A pte-mapped THP laid out the same way is indistinguishable; that is rare.
 * Returns one byte per page of the chunk (1 = inside such a block).
 */
function pmdMappedGuess(w: Uint32Array, n: number, start: Addr): Uint8Array {
  const out = new Uint8Array(n);
  const pfn = (k: number) => (w[2 * k + 1]! & PM.FRAME_HI) * 0x1_0000_0000 + w[2 * k]!;
  const present = (k: number) => (w[2 * k + 1]! & PM.PRESENT) !== 0;
  const skew = Number((start / PAGE) % BigInt(HUGE_PAGES));
  for (let first = skew === 0 ? 0 : HUGE_PAGES - skew; first + HUGE_PAGES <= n; first += HUGE_PAGES) {
    const base = pfn(first);
    if (!present(first) || base % HUGE_PAGES !== 0) continue;
    let ok = true;
    for (let k = 1; k < HUGE_PAGES && ok; k++) ok = present(first + k) && pfn(first + k) === base + k;
    if (ok) out.fill(1, first, first + HUGE_PAGES);
  }
  return out;
}

/** Accumulates pages into runs, merging neighbours with equal state. */
class RunBuilder {
  readonly runs: PageRun[] = [];

  push(start: Addr, end: Addr, state: PageState, huge: boolean, uffdWp: boolean): void {
    const pages = Number((end - start) / PAGE);
    const last = this.runs[this.runs.length - 1];
    if (last && last.state === state && last.huge === huge && last.uffdWp === uffdWp && last.start + BigInt(last.pages) * PAGE === start) {
      last.pages += pages;
    } else {
      this.runs.push({ start, pages, state, huge, uffdWp });
    }
  }

  pushPage(addr: Addr, state: PageState, huge: boolean, uffdWp: boolean): void {
    this.push(addr, addr + PAGE, state, huge, uffdWp);
  }
}
