/** `inspect`: a live process's regions with their page states counted, and per-page decoding of a range. */
import { release } from 'node:os';
import { PagesnapError, isErrno, type Addr } from '../native/index.js';
import {
  Pagemap, KpageReader, readRegions, readIdentity, assertPid, kpfNames, isAlive, exited, PRESENT_STATES,
  type PagemapMethod, type PageState, type Region, type ProcessIdentity, type PageDetail, type RegionKind,
} from '../proc/index.js';

const PAGE = 4096n;

/** Pages of a region by what its page table entries hold; `present` = data + zero + file. */
export interface PageCounts {
  pages: number;
  present: number;
  data: number;
  zero: number;
  file: number;
  /** PMD-mapped (THP or hugetlb) pages among the present ones */
  thp: number;
  swap: number;
  migration: number;
  device: number;
  hwpoison: number;
  guard: number;
  uffdWpMarker: number;
  poisonMarker: number;
  /** non-present entries whose kind pagemap hides from this reader */
  swapUnknown: number;
  /** present or swapped pages carrying the uffd-wp bit */
  uffdWp: number;
  notPresent: number;
}

const STATE_FIELD: Record<PageState, keyof PageCounts> = {
  data: 'data', zero: 'zero', file: 'file', swap: 'swap', migration: 'migration', device: 'device',
  hwpoison: 'hwpoison', guard: 'guard', 'uffd-wp-marker': 'uffdWpMarker', 'poison-marker': 'poisonMarker',
  'swap-unknown': 'swapUnknown',
};

function emptyCounts(pages = 0): PageCounts {
  return {
    pages, present: 0, data: 0, zero: 0, file: 0, thp: 0, swap: 0, migration: 0, device: 0, hwpoison: 0, guard: 0,
    uffdWpMarker: 0, poisonMarker: 0, swapUnknown: 0, uffdWp: 0, notPresent: pages,
  };
}

function addCounts(into: PageCounts, c: PageCounts): void {
  for (const k of Object.keys(into) as (keyof PageCounts)[]) into[k] += c[k];
}

export interface RegionReport {
  start: Addr;
  end: Addr;
  mode: string;
  kind: RegionKind;
  backing: Region['backing'];
  shmem?: Region['shmem'];
  path: string | null;
  deleted: boolean;
  offset: bigint;
  dev: string;
  inode: number;
  size: number;
  /** smaps counters of interest, bytes */
  rss: number;
  swapSmaps: number;
  vmFlags: string[];
  /** null where pagemap does not cover the region ([vsyscall] lies above the user address space) */
  counts: PageCounts | null;
}

export interface InspectReport {
  process: ProcessIdentity;
  kernel: string;
  method: PagemapMethod;
  /** PFNs and swap frames are visible (CAP_SYS_ADMIN); without them some states cannot be told apart. */
  framesVisible: boolean;
  swapTypes: string;
  caveats: string[];
  regions: RegionReport[];
  totals: PageCounts;
}

export interface InspectOptions {
  method?: PagemapMethod | 'auto';
}

function countRegion(pm: Pagemap, r: Region): PageCounts | null {
  if (r.kind === 'vsyscall') return null;
  const c = emptyCounts(Number((r.end - r.start) / PAGE));
  for (const run of pm.runs(r)) {
    c[STATE_FIELD[run.state]] += run.pages;
    c.notPresent -= run.pages;
    if (PRESENT_STATES.has(run.state)) {
      c.present += run.pages;
      if (run.huge) c.thp += run.pages;
    }
    if (run.uffdWp) c.uffdWp += run.pages;
  }
  return c;
}

function caveatsFor(pm: Pagemap): string[] {
  const out: string[] = [];
  if (!pm.framesVisible) {
    out.push('not running with CAP_SYS_ADMIN: swap types are hidden, so real swap, migration entries and poison markers count as swap-unknown; PFNs and kpageflags are unavailable');
    if (pm.method === 'pread') out.push('the pread path cannot tell zero pages or PMD mappings without PFNs: they count as data');
  }
  if (pm.swapTypes.source === 'assumed') out.push('no kernel config found (/proc/config.gz, /boot/config-*): swap types 24-30 are reported as swap-unknown');
  if (pm.method === 'pread') out.push('pread path: hugetlb migration, hwpoison and poison entries are invisible to pagemap reads (case H3)');
  return out;
}

/** Run `read` on a process whose identity was already read: a vanished /proc entry now means it exited. */
function whileAlive<T>(pid: number, read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (isErrno(e, 'ENOENT', 'ESRCH') && !isAlive(pid)) throw exited(pid, (e as { code: string }).code, e);
    throw e;
  }
}

export function inspect(pid: number, opts: InspectOptions = {}): InspectReport {
  assertPid(pid);
  const process = readIdentity(pid);
  return whileAlive(pid, () => inspectRegions(process, opts));
}

function inspectRegions(process: ProcessIdentity, opts: InspectOptions): InspectReport {
  const pid = process.pid;
  const regions = readRegions(pid);
  const pm = new Pagemap(pid, { method: opts.method });
  try {
    pm.prefetch(regions);
    const totals = emptyCounts();
    const reports = regions.map((r): RegionReport => {
      const counts = countRegion(pm, r);
      if (counts) addCounts(totals, counts);
      return {
        start: r.start, end: r.end, mode: r.mode, kind: r.kind, backing: r.backing, shmem: r.shmem, path: r.name,
        deleted: r.deleted, offset: r.offset, dev: r.dev, inode: r.inode, size: Number(r.end - r.start),
        rss: r.fields.Rss ?? 0, swapSmaps: r.fields.Swap ?? 0, vmFlags: r.vmFlags, counts,
      };
    });
    const t = pm.swapTypes;
    return {
      process, kernel: release(), method: pm.method, framesVisible: pm.framesVisible,
      swapTypes: `${t.maxSwapfiles} swap areas, markers at ${t.marker}${t.migration ? `, migration ${t.migration.read}-${t.migration.write}` : ''} (${t.source})`,
      caveats: caveatsFor(pm), regions: reports, totals,
    };
  } finally {
    pm.close();
  }
}

export interface PageReport extends PageDetail {
  region: { start: Addr; end: Addr; kind: RegionKind; path: string | null } | null;
  /** kpageflags names and kpagecount; null when unavailable (not root, or no PFN) */
  kpageflags: string[] | null;
  kpagecount: number | null;
}

export interface PagesReport {
  process: ProcessIdentity;
  method: PagemapMethod;
  framesVisible: boolean;
  kpageflags: string;
  pages: PageReport[];
}

/** At most this many pages are decoded per request: a range is for looking at, not for dumping. */
const MAX_DETAIL_PAGES = 1 << 20;

export function inspectPages(pid: number, start: Addr, end: Addr, opts: InspectOptions = {}): PagesReport {
  assertPid(pid);
  start &= ~(PAGE - 1n);
  end = (end + PAGE - 1n) & ~(PAGE - 1n);
  if (end <= start) throw new PagesnapError('empty page range', { code: 'EINVAL', hint: 'give --pages START-END with END above START' });
  if ((end - start) / PAGE > BigInt(MAX_DETAIL_PAGES)) {
    throw new PagesnapError(`page range too large: ${(end - start) / PAGE} pages`, { code: 'E2BIG', hint: `ask for at most ${MAX_DETAIL_PAGES} pages at a time` });
  }
  const process = readIdentity(pid);
  return whileAlive(pid, () => decodePages(process, start, end, opts));
}

function decodePages(process: ProcessIdentity, start: Addr, end: Addr, opts: InspectOptions): PagesReport {
  const pid = process.pid;
  const regions = readRegions(pid);
  const pm = new Pagemap(pid, { method: opts.method });
  const kp = new KpageReader();
  try {
    const pages: PageReport[] = [];
    let pos = start;
    for (const r of regions) {
      if (r.end <= pos || r.start >= end || r.kind === 'vsyscall') continue;
      // pages in gaps between VMAs are unmapped: report them without a region
      for (; pos < r.start && pos < end; pos += PAGE) pages.push(unmapped(pos));
      const s = pos > r.start ? pos : r.start;
      const e = end < r.end ? end : r.end;
      const details = pm.details(s, e, r);
      const info = kp.read(details.map((d) => d.pfn));
      const region = { start: r.start, end: r.end, kind: r.kind, path: r.name };
      details.forEach((d, i) => {
        const k = info[i];
        // (the detail given the rest, not spread into a new object with it: V8 makes such an object a shape of its
        // own, hundreds of bytes a page)
        const p = d as PageReport;
        p.region = region;
        p.kpageflags = k ? kpfNames(k.flags) : null;
        p.kpagecount = k ? Number(k.count) : null;
        pages.push(p);
      });
      pos = e;
    }
    for (; pos < end; pos += PAGE) pages.push(unmapped(pos));
    return { process, method: pm.method, framesVisible: pm.framesVisible, kpageflags: kp.unavailable ?? 'available', pages };
  } finally {
    pm.close();
    kp.close();
  }
}

function unmapped(addr: Addr): PageReport {
  return {
    addr, raw: null, state: 'none', present: false, swapped: false, file: false, exclusive: false, softDirty: false,
    uffdWp: false, guard: false, huge: false, pfn: null, swapType: null, swapOffset: null, categories: null,
    region: null, kpageflags: null, kpagecount: null,
  };
}

