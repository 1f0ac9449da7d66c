/**
 * How a snapshot's process comes back: per region, how it is mapped in the restore host and where each of its
 * pages comes from. Private anonymous and hugetlb memory is registered with userfaultfd and streamed; a private
 * file mapping is the file again with its copied-on-write pages written over it; a shmem mapping maps its
 * object, recreated as a memfd. Pages whose content the snapshot does not hold are poisoned (SIGBUS on access),
 * never left to read as zeros.
 */
import { statSync } from 'node:fs';
import { MAP, MADV, PROT, type Addr } from '../native/index.js';
import { fileChange } from '../proc/index.js';
import type { SnapshotReader } from '../snapshot/reader.js';
import type { SnapshotObject, SnapshotProcess, SnapshotRegion } from '../snapshot/manifest.js';
import { SegmentBuilder, Op, type SegmentTable } from './segments.js';

export type Placement =
  /** private anonymous memory, filled through userfaultfd */
  | { how: 'anon'; lostWhy?: string; fileIsZero?: true }
  /** droppable anonymous memory (MAP_DROPPABLE): userfaultfd refuses it, so its pages are written in directly */
  | { how: 'droppable' }
  /**
   * private hugetlb memory, filled through userfaultfd in whole huge pages; or `written` in directly before the host
   * runs, huge pages too large to stream (see STREAMED_HUGE_PAGE)
   */
  | { how: 'hugetlb'; hugePage: number; written?: true }
  /**
   * the mapped file again. A private mapping's copied-on-write pages are written over it; a shared mapping's pages
   * are the file's, and a restore never writes into a file.
   */
  | { how: 'file'; path: string; shared: boolean }
  /** an object (shmem, hugetlbfs, a deleted file), recreated as a memfd (a private mapping's copied-on-write pages are written over it) */
  | { how: 'object'; object: number }
  | { how: 'skip'; why: string };

export interface RegionPlan {
  region: SnapshotRegion;
  /** where it is mapped in the host: its own address unless relocated */
  start: Addr;
  prot: number;
  /**
   * The protection to map with, when it differs from `prot` (then mprotect follows): a region the process
   * mapped writable and later made read-only is charged to commit accounting (VmFlags `ac`), and the kernel
   * will not merge it with an unaccounted neighbour. Mapping it writable first keeps it a region of its own.
   */
  mapProt: number;
  /** mmap flags, without MAP_FIXED_NOREPLACE */
  flags: number;
  advice: number[];
  /** mseal(2) it once its content is in place (VmFlags `sl`) */
  seal: boolean;
  /** its dump flag is flipped until it is filled, to keep it apart from a neighbour like it (see keepApart) */
  apart: boolean;
  place: Placement;
}

export interface ObjectPlan {
  object: SnapshotObject;
  /** huge page size for hugetlbfs objects, else 0 */
  hugePage: number;
}

export interface RegionsPlan {
  regions: RegionPlan[];
  objects: ObjectPlan[];
  notes: string[];
}

const MAP_HUGE_SHIFT = 26;
/** placements most regions share (a plan's placement is not changed once made) */
const UNPLACED: Placement = { how: 'skip', why: 'not placed' };
const ANON: Placement = { how: 'anon' };
const DEFAULT_HUGE_PAGE = 2 << 20;

const protOf = (mode: string) => (mode[0] === 'r' ? PROT.READ : 0) | (mode[1] === 'w' ? PROT.WRITE : 0) | (mode[2] === 'x' ? PROT.EXEC : 0);

/** VmFlags that madvise can give back to a fresh mapping. */
const ADVICE: Record<string, number> = {
  hg: MADV.HUGEPAGE, nh: MADV.NOHUGEPAGE, dc: MADV.DONTFORK, wf: MADV.WIPEONFORK, dd: MADV.DONTDUMP, mg: MADV.MERGEABLE,
  rr: MADV.RANDOM, sr: MADV.SEQUENTIAL,
};

function hugePageOf(r: SnapshotRegion): number {
  return r.smaps.KernelPageSize && r.smaps.KernelPageSize > 4096 ? r.smaps.KernelPageSize : DEFAULT_HUGE_PAGE;
}

/** The file a private or shared file mapping maps, if it is still there: why not, otherwise. */
function fileAgain(r: SnapshotRegion): { path: string } | { why: string } {
  if (!r.path || r.deleted) return { why: `${r.path ?? 'its file'} was deleted before the dump` };
  const st = statSync(r.path, { throwIfNoEntry: false });
  if (!st) return { why: `${r.path} no longer exists` };
  // only a regular file is opened again: opening a device can act (a watchdog arms, a tape rewinds), and a
  // snapshot's paths are only as trustworthy as the snapshot
  if (!st.isFile()) return { why: `${r.path} is not a regular file now` };
  return { path: r.path };
}

/**
 * Huge pages larger than this are written straight into the host before it runs, not streamed, in a lazy restore
 * too: UFFDIO_COPY places a huge page only whole, from all of its bytes decoded in pagesnap first (a 1 GiB page
 * cost 1.2 GB of RSS, and 1.9 s against 0.5 for writing it in), and a touch would wait for all of it anyway.
 */
const STREAMED_HUGE_PAGE = 32 << 20;

/** Whether any of a region's pages must be poisoned (which only userfaultfd memory can be). */
function needsPoison(reader: SnapshotReader, r: SnapshotRegion): boolean {
  for (const run of reader.runsOf(r.runs, reader.pagesOf(r))) {
    if (run.verdict === 'poison' || run.verdict === 'unreadable' || run.verdict === 'retry') return true;
  }
  return false;
}

/** A region's plan before it is placed: mapped as the process had it, at its own address. */
function unplaced(region: SnapshotRegion): RegionPlan {
  const shared = region.mode[3] === 's';
  const prot = protOf(region.mode);
  const accounted = !shared && region.vmFlags.includes('ac') && !(prot & PROT.WRITE);
  const advice: number[] = [];
  for (const f of region.vmFlags) if (ADVICE[f] !== undefined) advice.push(ADVICE[f]!);
  return {
    region, start: region.start, prot, mapProt: accounted ? prot | PROT.READ | PROT.WRITE : prot,
    flags: (shared ? MAP.SHARED : MAP.PRIVATE) | (region.vmFlags.includes('nr') ? MAP.NORESERVE : 0) |
      (region.vmFlags.includes('gd') ? MAP.GROWSDOWN : 0),
    advice, seal: region.vmFlags.includes('sl'), apart: false, place: UNPLACED,
  };
}

/**
 * `rp` placed. (A plan is this one object, placed: a spread of it for each way to place made every plan an object
 * of a shape of its own, 800 bytes a region of a process with 60000; and the helpers below are made once, not per
 * region: planning 60000 regions took 125 ms with five closures made over each, 85 without.)
 */
function at(rp: RegionPlan, place: Placement, flags = rp.flags): RegionPlan {
  rp.place = place;
  rp.flags = flags;
  return rp;
}

const skip = (rp: RegionPlan, why: string): RegionPlan => at(rp, { how: 'skip', why });

/** What the region held, given back as private anonymous memory, saying so. */
function plainMemory(rp: RegionPlan, notes: string[], was: string, place: Placement & { how: 'anon' } = { how: 'anon' }): RegionPlan {
  notes.push(`${hex(rp.region.start)} was ${was}`);
  return at(rp, place, (rp.flags & ~MAP.SHARED) | MAP.PRIVATE | MAP.ANONYMOUS);
}

/**
 * A shared mapping whose object is not in the snapshot (the dump could not open it, or left it out) may still have
 * pages in it, read through the mapping: they come back, as private memory, and the rest is lost.
 */
function withoutObject(rp: RegionPlan, notes: string[], what: string, lostWhy: string, place: Placement & { how: 'anon' | 'hugetlb' } = { how: 'anon', lostWhy }): RegionPlan {
  notes.push(`${hex(rp.region.start)} was ${what}; what the snapshot holds of it is restored as private memory, the rest is lost (${lostWhy})`);
  return at(rp, place, (rp.flags & ~MAP.SHARED) | MAP.PRIVATE | MAP.ANONYMOUS | (place.how === 'hugetlb' ? MAP.HUGETLB | (Math.log2(place.hugePage) << MAP_HUGE_SHIFT) : 0));
}

/**
 * A private mapping of /dev/zero is anonymous memory, but it keeps the device as its file, whose size is 0:
 * UFFDIO_COPY and UFFDIO_ZEROPAGE refuse every address of it as past the file's end (EFAULT). Plain anonymous
 * memory is the same memory, without the name.
 */
const zeroDevice = (rp: RegionPlan, notes: string[]) =>
  plainMemory(rp, notes, 'a private mapping of /dev/zero; it is restored as anonymous memory, without the name (userfaultfd cannot fill a mapping of /dev/zero)', { how: 'anon', fileIsZero: true });

/** `rp` maps object `id`, which comes back as a memfd. */
function mapsObject(rp: RegionPlan, reader: SnapshotReader, objects: Map<number, ObjectPlan>, id: number, hugePage = 0): RegionPlan {
  objects.set(id, { object: reader.object(id), hugePage });
  return at(rp, { how: 'object', object: id });
}

/** How one region comes back; the objects it maps are added to `objects`. */
function placeRegion(reader: SnapshotReader, region: SnapshotRegion, notes: string[], objects: Map<number, ObjectPlan>): RegionPlan {
  const rp = unplaced(region);
  const shared = (rp.flags & MAP.SHARED) !== 0;
  switch (region.kind) {
    case 'vdso': case 'vvar': case 'vsyscall':
      return skip(rp, 'the kernel maps its own in every process');
    case 'special':
      // (a kernel object mapped PFNMAP/IO; or any, in a snapshot from before kernel-object regions)
      if (region.path?.startsWith('anon_inode:')) return skip(rp, 'a kernel object\'s memory cannot be recreated');
      if (region.backing === 'kernel') return skip(rp, 'the kernel makes this mapping itself where it needs one');
      return skip(rp, 'device or PFN-mapped memory cannot be recreated');
    case 'secret':
      return skip(rp, 'memfd_secret memory: the snapshot holds none of it (no other process can read it)');
    case 'aio-ring':
      // The host has no aio context (io_setup places its own ring), but whoever reads its memory sees what the
      // process saw there.
      return plainMemory(rp, notes, 'an aio completion ring (io_setup); its bytes are restored as private anonymous memory');
    case 'kernel-object':
      // (as an aio ring: the host has none of the object, and its bytes are what the process saw there)
      return plainMemory(rp, notes, `the memory of a kernel object (${region.path}); its bytes are restored as private anonymous memory`);
    case 'anon-private': case 'heap': case 'stack':
      if (region.vmFlags.includes('dp')) return at(rp, { how: 'droppable' }, (rp.flags & ~MAP.PRIVATE) | MAP.DROPPABLE | MAP.ANONYMOUS);
      if (region.path === '/dev/zero') return zeroDevice(rp, notes);
      return at(rp, ANON, rp.flags | MAP.ANONYMOUS);
    case 'hugetlb': {
      const hugePage = hugePageOf(region);
      if (shared) {
        if (!region.object) return withoutObject(rp, notes, `shared hugetlb memory (${region.path})`, 'its object is not in the snapshot', { how: 'hugetlb', hugePage });
        return mapsObject(rp, reader, objects, region.object.id, hugePage);
      }
      const flags = rp.flags | MAP.ANONYMOUS | MAP.HUGETLB | (Math.log2(hugePage) << MAP_HUGE_SHIFT);
      const written = hugePage > STREAMED_HUGE_PAGE && !needsPoison(reader, region);
      return at(rp, written ? { how: 'hugetlb', hugePage, written } : { how: 'hugetlb', hugePage }, flags);
    }
    case 'shmem-shared':
      if (!region.object) return withoutObject(rp, notes, `shared memory (${region.path})`, 'its object is not in the snapshot');
      return mapsObject(rp, reader, objects, region.object.id);
    case 'file-private': {
      // (older snapshots recorded a private mapping of /dev/zero as a file's, its untouched pages as the file's)
      if (region.path === '/dev/zero' && !region.object) return zeroDevice(rp, notes);
      // A private mapping of shmem or of a deleted file: its object comes back as a memfd, mapped private again.
      if (region.object) return mapsObject(rp, reader, objects, region.object.id);
      const f = fileAgain(region);
      if ('path' in f) return at(rp, { how: 'file', path: f.path, shared: false });
      // The file's own pages are gone with it: map anonymous memory, the copied-on-write pages go back, the
      // rest is poisoned.
      return at(rp, { how: 'anon', lostWhy: f.why }, rp.flags | MAP.ANONYMOUS);
    }
    case 'file-shared': {
      // a deleted file: its content comes back as a memfd (what the process saw was already only reachable
      // through its mappings)
      if (region.object) return mapsObject(rp, reader, objects, region.object.id);
      const f = fileAgain(region);
      if ('why' in f) return withoutObject(rp, notes, `a shared mapping of ${region.path}`, f.why);
      return at(rp, { how: 'file', path: f.path, shared: true });
    }
  }
}

/** How each region comes back. */
export function planRegions(reader: SnapshotReader, proc: SnapshotProcess): RegionsPlan {
  const notes: string[] = [];
  const objects = new Map<number, ObjectPlan>();
  const regions = proc.regions.map((region) => placeRegion(reader, region, notes, objects));
  for (const rp of regions) {
    if (rp.place.how !== 'skip' && rp.region.vmFlags.includes('lo')) notes.push(`${hex(rp.region.start)} was locked in memory (mlock); it is restored unlocked`);
  }
  notes.push(...changedFiles(reader, regions));
  keepApart(regions);
  return { regions, objects: [...objects.values()], notes };
}

const hex = (a: Addr) => `0x${a.toString(16)}`;

/**
 * Files mapped again that are not as they were at the dump: the pages the process had from them (clean pages of
 * private mappings, every page of shared ones) come from the file as it is now. One note per file that matters.
 */
function changedFiles(reader: SnapshotReader, regions: readonly RegionPlan[]): string[] {
  const files = new Map<string, { change: string | undefined; pages: number }>();
  for (const { region, place } of regions) {
    if (place.how !== 'file') continue;
    let f = files.get(place.path);
    if (!f) files.set(place.path, (f = { change: fileChange(place.path, region), pages: 0 }));
    if (f.change === undefined) continue;
    for (const run of reader.runsOf(region.runs, reader.pagesOf(region))) {
      if (run.verdict === 'file' || (place.shared && (run.verdict === 'data' || run.verdict === 'zero'))) f.pages += run.pages;
    }
  }
  return [...files].filter(([, f]) => f.change !== undefined && f.pages > 0).map(([path, f]) => `${path} ${f.change}: ${f.pages} pages mapped from it come from the file as it is now`);
}

/**
 * Neighbours mapped alike would be merged into one region by the kernel, where the process had them apart (their
 * pages belonged to different anon_vmas: a JVM's malloc arenas look like this). Every second one of a run of such
 * neighbours is mapped with its dump flag flipped, which keeps it a region of its own while it is filled; once both
 * hold pages, each under an anon_vma of its own, the kernel no longer merges them when the flag is put back.
 */
function keepApart(regions: RegionPlan[]): void {
  for (let i = 1; i < regions.length; i++) {
    const a = regions[i - 1]!;
    const b = regions[i]!;
    if (a.apart || a.place.how !== 'anon' || b.place.how !== 'anon' || a.region.end !== b.region.start) continue;
    if (a.flags === b.flags && a.prot === b.prot && a.mapProt === b.mapProt && a.advice.join() === b.advice.join()) b.apart = true;
  }
}

/** The madvise that sets a region's dump flag as the process had it, or (`flipped`) the other way. */
export function dumpAdvice(rp: RegionPlan, flipped: boolean): number {
  return rp.advice.includes(MADV.DONTDUMP) !== flipped ? MADV.DONTDUMP : MADV.DODUMP;
}

/** The pages of a region not mapped in the host that held something (holes and guards hold nothing). */
function lostRuns(reader: SnapshotReader, r: SnapshotRegion, start: Addr, why: string, into: LostRange[]): void {
  const ps = reader.pageSize;
  for (const run of reader.runsOf(r.runs, reader.pagesOf(r))) {
    if (run.verdict === 'hole' || run.verdict === 'guard' || run.verdict === 'special') continue;
    const at = start + BigInt(run.offset * ps);
    const pages = run.pages;
    const last = into[into.length - 1];
    if (last && last.why === why && last.start + BigInt(last.len) === at) last.len += pages * ps;
    else into.push({ start: at, len: pages * ps, why });
  }
}

export interface Range {
  start: Addr;
  len: number;
}

/**
 * Pages written straight into the host's memory (/proc/PID/mem): copied-on-write pages of file and shmem mappings,
 * droppable memory, huge pages too large to stream.
 */
export interface DirectWrite {
  addr: Addr;
  pages: number;
  /** first stored page, or null for zero pages */
  src: number | null;
}

export interface LostRange extends Range {
  why: string;
}

export interface ContentPlan {
  table: SegmentTable;
  /** ranges registered with userfaultfd (MISSING) */
  registered: (Range & { hugePage: number })[];
  guards: Range[];
  writes: DirectWrite[];
  /** pages whose content the snapshot lacks, poisoned where userfaultfd can, else listed */
  lost: LostRange[];
  counts: { data: number; zero: number; poison: number; written: number };
}

/** Turn each region's runs into placements, at the address the region got in the host. */
export function planContent(reader: SnapshotReader, plan: RegionsPlan): ContentPlan {
  const ps = reader.pageSize;
  const b = new SegmentBuilder();
  const out: Omit<ContentPlan, 'table' | 'counts'> = { registered: [], guards: [], writes: [], lost: [] };
  let written = 0;
  plan.regions.forEach((rp, index) => {
    const r = rp.region;
    const p = rp.place;
    if (p.how === 'skip') {
      // process memory the host will not have: say so (kernel and device regions' runs are `special`: not lost)
      lostRuns(reader, r, rp.start, p.why, out.lost);
      return;
    }
    const streamed = p.how === 'anon' || (p.how === 'hugetlb' && !p.written);
    const len = Number(r.end - r.start);
    if (streamed) out.registered.push({ start: rp.start, len, hugePage: p.how === 'hugetlb' ? p.hugePage : 0 });
    const shift = p.how === 'hugetlb' ? Math.log2(p.hugePage / ps) : 0;
    const first = Number(rp.start / BigInt(ps));
    const addrOf = (off: number) => rp.start + BigInt(off) * BigInt(ps);
    for (const { run, offset, pages, src } of reader.stretches(r)) {
      const range = { start: addrOf(offset), len: pages * ps };
      switch (run.verdict) {
        case 'data': case 'zero': {
          const stored = run.verdict === 'data' ? src! : null;
          if (streamed) b.push(index, first + offset, pages, stored === null ? Op.ZERO : Op.DATA, stored ?? 0, shift);
          else if (!(p.how === 'file' && p.shared)) {
            // a file or object mapping again: its copied-on-write pages are written over it (droppable memory and
            // huge pages too large to stream: all their pages). A shared file mapping's pages are the file's.
            out.writes.push({ addr: range.start, pages, src: stored });
            written += pages;
          }
          break;
        }
        case 'hole': case 'special':
          break;
        case 'guard':
          out.guards.push(range);
          break;
        case 'poison':
          if (streamed) b.push(index, first + offset, pages, Op.POISON, 0, shift);
          else out.lost.push({ ...range, why: 'poisoned at dump time (only userfaultfd memory can be poisoned again)' });
          break;
        case 'file': case 'object':
          // Pages of a file or object that is mapped again come from it; if it is gone, nothing holds them. (A page of
          // /dev/zero is a hole of the anonymous memory its mapping is.)
          if (p.how === 'anon' && !p.fileIsZero) {
            b.push(index, first + offset, pages, Op.POISON, 0, shift);
            out.lost.push({ ...range, why: p.lostWhy ?? 'not in the snapshot' });
          }
          break;
        case 'unreadable': case 'retry':
          if (streamed) b.push(index, first + offset, pages, Op.POISON, 0, shift);
          out.lost.push({ ...range, why: run.reason ? `unreadable at dump time: ${run.reason}` : 'unreadable at dump time' });
          break;
      }
    }
  });
  return { ...out, table: b.build(), counts: { ...b.counts, written } };
}
