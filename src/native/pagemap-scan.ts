/** The PAGEMAP_SCAN ioctl on an open /proc/PID/pagemap (Linux 6.7+). One call; pagination lives in src/proc. */
import { layout, pack } from './struct.js';
import { ioctl, type Addr } from './syscalls.js';
import { addressOf } from './libc.js';

export const PAGEMAP_SCAN = 0xc0606610;

export const PAGE_IS = {
  WPALLOWED: 1 << 0,
  WRITTEN: 1 << 1,
  FILE: 1 << 2,
  PRESENT: 1 << 3,
  SWAPPED: 1 << 4,
  PFNZERO: 1 << 5,
  HUGE: 1 << 6,
  SOFT_DIRTY: 1 << 7,
  GUARD: 1 << 8,
} as const;
export const PM_SCAN_CATEGORIES = 0x1ff;
export const PM_SCAN_FLAGS = { WP_MATCHING: 1, CHECK_WPASYNC: 2 } as const;

export const PM_SCAN_ARG = layout('pm_scan_arg', 96, {
  size: [0x00, 'u64'], flags: [0x08, 'u64'], start: [0x10, 'u64'], end: [0x18, 'u64'], walk_end: [0x20, 'u64'],
  vec: [0x28, 'u64'], vec_len: [0x30, 'u64'], max_pages: [0x38, 'u64'], category_inverted: [0x40, 'u64'],
  category_mask: [0x48, 'u64'], category_anyof_mask: [0x50, 'u64'], return_mask: [0x58, 'u64'],
});
export const PAGE_REGION = layout('page_region', 24, { start: [0, 'u64'], end: [8, 'u64'], categories: [16, 'u64'] });

export interface ScanQuery {
  start: Addr;
  end: Addr;
  flags?: number;
  maxPages?: number;
  inverted?: number;
  mask?: number;
  anyof?: number;
  returnMask: number;
}

export interface ScanRegion {
  start: Addr;
  end: Addr;
  categories: number;
}

export interface ScanResult {
  regions: ScanRegion[];
  /** Where the kernel stopped. Trust it only when the call succeeded (the kernel writes `end` even on -EPERM). */
  walkEnd: Addr;
  /** The vector filled up: the caller must resume from walkEnd. */
  full: boolean;
}

/** One PAGEMAP_SCAN call with room for `vec.length / 24` regions. Throws NativeError on failure. */
export function pagemapScan(fd: number, q: ScanQuery, vec: Buffer): ScanResult {
  const vecLen = Math.floor(vec.length / PAGE_REGION.size);
  const arg = pack(PM_SCAN_ARG, {
    size: PM_SCAN_ARG.size, flags: q.flags ?? 0, start: q.start, end: q.end, vec: vecLen ? addressOf(vec) : 0n,
    vec_len: vecLen, max_pages: q.maxPages ?? 0, category_inverted: q.inverted ?? 0, category_mask: q.mask ?? 0,
    category_anyof_mask: q.anyof ?? 0, return_mask: q.returnMask,
  });
  const n = ioctl(fd, PAGEMAP_SCAN, arg, 'ioctl(PAGEMAP_SCAN)');
  const regions: ScanRegion[] = new Array(n);
  // (a DataView makes one BigInt an address; Buffer's readBigUInt64LE makes four)
  const v = new DataView(vec.buffer, vec.byteOffset, n * PAGE_REGION.size);
  for (let i = 0; i < n; i++) {
    const o = i * PAGE_REGION.size;
    // (the categories are the low 9 bits)
    regions[i] = { start: v.getBigUint64(o, true), end: v.getBigUint64(o + 8, true), categories: v.getUint32(o + 16, true) };
  }
  return { regions, walkEnd: arg.readBigUInt64LE(PM_SCAN_ARG.fields.walk_end[0]), full: n === vecLen && vecLen > 0 };
}
