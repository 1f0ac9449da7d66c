/**
 * Decoding one pagemap entry (a u64 per 4 KiB page) into what the page table holds. This is the literal reading
 * of the bits: where the data really is, given pagemap's known blind spots, is the model's business (src/model).
 */
import type { Addr } from '../native/index.js';
import type { SwapTypeLayout } from './kernel-config.js';

/**
 * What this process's page table entry holds. Pages without an entry ('none') are not listed in runs.
 * - data: present anonymous (or COW'd) page; zero: the shared 4 KiB or huge zero page; file: present page that is
 *   not anonymous (page cache, shmem);
 * - swap: a real swap entry; migration / device / hwpoison: the special swap types;
 * - guard / uffd-wp-marker / poison-marker: pte markers;
 * - swap-unknown: a non-present entry whose kind is hidden (opened without CAP_SYS_ADMIN, hugetlb, or an ambiguous
 *   type on a kernel whose config could not be read).
 */
export type PageState =
  | 'data' | 'zero' | 'file' | 'swap' | 'migration' | 'device' | 'hwpoison' | 'guard' | 'uffd-wp-marker'
  | 'poison-marker' | 'swap-unknown';

export const PRESENT_STATES: ReadonlySet<PageState> = new Set(['data', 'zero', 'file']);

/** A run of consecutive pages in the same state. */
export interface PageRun {
  start: Addr;
  pages: number;
  state: PageState;
  /** PMD-mapped THP or hugetlb */
  huge: boolean;
  /** The uffd-wp bit on a present or swapped entry (markers are their own state). */
  uffdWp: boolean;
}

// pagemap bits, as bit positions within the high 32-bit word of the little-endian u64.
export const PM = {
  PRESENT: 1 << 31 >>> 0, // bit 63
  SWAP: 1 << 30, // 62
  FILE: 1 << 29, // 61
  GUARD: 1 << 26, // 58
  UFFD_WP: 1 << 25, // 57
  EXCLUSIVE: 1 << 24, // 56
  SOFT_DIRTY: 1 << 23, // 55
  FRAME_HI: 0x7fffff, // bits 32..54
} as const;

export const MARKER = { UFFD_WP: 1, POISONED: 2, GUARD: 4 } as const;

export interface DecodeContext {
  swapTypes: SwapTypeLayout;
  /** The opener had CAP_SYS_ADMIN, so PFNs and swap frames are real (else they read as 0). */
  framesVisible: boolean;
  /** PFN of the 4 KiB zero page, when known. */
  zeroPfn: number | null;
  /** The region is anonymous memory: there PM_FILE can only be the huge zero page (case A7). */
  anonymous: boolean;
  hugetlb: boolean;
  /** The region is registered for write protection (VmFlags uw): elsewhere an entry's uffd-wp bit is not the process's. */
  writeProtected: boolean;
}

export interface DecodedEntry {
  state: PageState | 'none';
  uffdWp: boolean;
}

/** The 55-bit frame (PFN or swap type|offset<<5) as a number: exact below 2^53, which PFNs and slots stay under. */
export const frameOf = (hi: number, lo: number): number => (hi & PM.FRAME_HI) * 0x1_0000_0000 + lo;

export function swapState(type: number, offset: number, t: SwapTypeLayout): PageState {
  if (type === t.marker) {
    if (offset & MARKER.GUARD) return 'guard';
    if (offset & MARKER.POISONED) return 'poison-marker';
    if (offset & MARKER.UFFD_WP) return 'uffd-wp-marker';
    return 'swap-unknown';
  }
  if (type < t.maxSwapfiles) return 'swap';
  if (t.hwpoison === type) return 'hwpoison';
  if (t.migration && type >= t.migration.read && type <= t.migration.write) return 'migration';
  if (t.device && type >= t.device.write && type <= t.device.exclusive) return 'device';
  return 'swap-unknown';
}

/** Decode the two 32-bit halves of one pagemap entry. */
export function decodeEntry(hi: number, lo: number, ctx: DecodeContext): DecodedEntry {
  if ((hi | lo) === 0) return { state: 'none', uffdWp: false };
  const uffdWp = (hi & PM.UFFD_WP) !== 0;
  if (hi & PM.PRESENT) {
    const frame = frameOf(hi, lo);
    let state: PageState = 'data';
    if (ctx.framesVisible && ctx.zeroPfn !== null && frame === ctx.zeroPfn) state = 'zero';
    else if (hi & PM.FILE) state = ctx.anonymous && !ctx.hugetlb ? 'zero' : 'file';
    return { state, uffdWp };
  }
  if (hi & PM.GUARD) return { state: 'guard', uffdWp: false };
  if (hi & PM.SWAP) {
    if (!ctx.framesVisible) return { state: 'swap-unknown', uffdWp };
    const state = swapState(lo & 31, Math.floor(frameOf(hi, lo) / 32), ctx.swapTypes);
    return { state, uffdWp: state === 'uffd-wp-marker' ? false : uffdWp };
  }
  // hugetlb shows a uffd-wp marker as bit 57 alone (no SWAP bit): pagemap_hugetlb_range.
  if (uffdWp) return { state: 'uffd-wp-marker', uffdWp: false };
  return { state: 'swap-unknown', uffdWp: false };
}

/** Everything pagemap says about one page, for `inspect --pages`. */
export interface PageDetail {
  addr: Addr;
  raw: bigint | null;
  state: PageState | 'none';
  present: boolean;
  swapped: boolean;
  file: boolean;
  exclusive: boolean;
  softDirty: boolean;
  uffdWp: boolean;
  guard: boolean;
  huge: boolean;
  /** PFN of a present page (null when hidden: the opener lacks CAP_SYS_ADMIN). */
  pfn: bigint | null;
  swapType: number | null;
  swapOffset: bigint | null;
  /** PAGEMAP_SCAN categories of the page, when the scan path was used. */
  categories: number | null;
}

export function detailOf(addr: Addr, raw: bigint, ctx: DecodeContext, huge: boolean, categories: number | null): PageDetail {
  const hi = Number(raw >> 32n);
  const lo = Number(raw & 0xffffffffn);
  const d = decodeEntry(hi, lo, ctx);
  const present = (hi & PM.PRESENT) !== 0;
  const swapped = (hi & PM.SWAP) !== 0;
  const frame = raw & ((1n << 55n) - 1n);
  return {
    addr, raw, state: d.state, present, swapped, huge,
    file: (hi & PM.FILE) !== 0,
    exclusive: (hi & PM.EXCLUSIVE) !== 0,
    softDirty: (hi & PM.SOFT_DIRTY) !== 0,
    uffdWp: (hi & PM.UFFD_WP) !== 0,
    guard: (hi & PM.GUARD) !== 0,
    pfn: present && ctx.framesVisible ? frame : null,
    swapType: swapped && ctx.framesVisible ? Number(frame & 31n) : null,
    swapOffset: swapped && ctx.framesVisible ? frame >> 5n : null,
    categories,
  };
}
