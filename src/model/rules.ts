/**
 * The inaccuracy model as a table: what is known about a page (evidence) → what a snapshot must do with it
 * (verdict) and which case of kernel-semantics.md §2.1 says so. Rules are tried in order; the first that matches
 * decides. Evidence that could not be gathered is undefined, and a rule that needs it does not match: without
 * CAP_SYS_ADMIN, or without access to a shmem object, the verdict falls back to what the rest of the evidence
 * supports and its case id says which (P1 for hidden swap types), instead of guessing.
 */
import type { PageState, RegionKind } from '../proc/index.js';
import type { Verdict, CaseId } from './verdict.js';

export interface Evidence {
  region: {
    kind: RegionKind;
    /** MAP_SHARED ('s' in maps) */
    shared: boolean;
    /** the backing object is shmem (memfd, tmpfs, SysV, shared anonymous) */
    shmemBacked?: boolean;
    /** a file mapping whose file was deleted: only its mappings reach the content now, so it is kept as an object */
    fileGone?: boolean;
    /** the process may read it (PROT_NONE regions need /proc/PID/mem) */
    readable?: boolean;
    vmFlags: readonly string[];
  };
  /** what this process's page table entry holds, decoded (swap types need CAP_SYS_ADMIN: else swap-unknown) */
  pte: PageState | 'none';
  /** PMD-mapped (THP or hugetlb) */
  huge?: boolean;
  /** the uffd-wp bit on a present or swapped entry */
  uffdWp?: boolean;
  /** PM_MMAP_EXCLUSIVE of a present page */
  exclusive?: boolean;
  /** a device-exclusive entry (DEVICE_EXCLUSIVE swap type) */
  deviceExclusive?: boolean;
  /** kpageflags of the page's PFN (root only) */
  kpf?: { ksm?: boolean; swapBacked?: boolean };
  /** the shmem or file object behind the page: SEEK_DATA, residency (mincore on our own mapping), cachestat */
  object?: { data: boolean; resident?: boolean; cached?: boolean };
  /** the page's bytes were read and are all zero */
  zeroContent?: boolean;
  /** include clean file pages in the snapshot (`--include-file-pages`) */
  includeFilePages?: boolean;
}

export interface Rule {
  case: CaseId;
  /** the case in a few words, as §2.1 names it */
  name: string;
  when: (e: Evidence) => boolean;
  verdict: Verdict | ((e: Evidence) => Verdict);
  /** why this verdict: where the data is */
  why: string;
}

const K = (e: Evidence) => e.region.kind;
const anonKind = (e: Evidence) => K(e) === 'anon-private' || K(e) === 'heap' || K(e) === 'stack';
const privateKind = (e: Evidence) => anonKind(e) || K(e) === 'file-private' || (K(e) === 'hugetlb' && !e.region.shared);
/** A shared mapping of an object (shmem or hugetlbfs): the object holds the data, not the page tables. */
const objectKind = (e: Evidence) => K(e) === 'shmem-shared' || (K(e) === 'hugetlb' && e.region.shared);
/**
 * A private mapping whose clean pages nothing outside the target's mappings keeps: of shmem (a memfd dies with its
 * last user) or of a deleted file. They are stored with the object, not left to a file.
 */
const privateObject = (e: Evidence) => K(e) === 'file-private' && (e.region.shmemBacked === true || e.region.fileGone === true);
const goneShared = (e: Evidence) => K(e) === 'file-shared' && e.region.fileGone === true;
const flag = (e: Evidence, f: string) => e.region.vmFlags.includes(f);
const pte = (...s: (PageState | 'none')[]) => (e: Evidence) => s.includes(e.pte);
// (a plain loop: the dump decides a few pages per region, and a closure per test made 800 MB of garbage for 60000)
const all = (...fs: ((e: Evidence) => boolean)[]) => (e: Evidence) => {
  for (let i = 0; i < fs.length; i++) if (!fs[i]!(e)) return false;
  return true;
};
const NEVER_READ: ReadonlySet<RegionKind> = new Set(['special', 'vvar', 'vsyscall', 'vdso']);
const fileOrData = (e: Evidence): Verdict => (e.includeFilePages ? 'data' : 'file');
const UFFD_HOLE = 'registered with userfaultfd (missing mode): a touch would ask the process\'s fault handler for its content, which a dump cannot do';

export const RULES: readonly Rule[] = [
  // Regions that are never read.
  { case: 'X1', name: 'kernel or device region (vvar, vdso, vsyscall, PFNMAP/IO)', when: (e) => NEVER_READ.has(K(e)), verdict: 'special', why: 'not process memory: never read' },
  { case: 'X2', name: 'memfd_secret memory', when: (e) => K(e) === 'secret', verdict: 'unreadable', why: 'memfd_secret memory: the kernel lets no other process read it (by design)' },
  // The kernel allocates every page of the ring at io_setup and writes completions through a mapping of its own, so
  // this page table shows only the pages the process has looked at. None can be opened (map_files gives ENXIO).
  { case: 'X4', name: 'aio ring page', when: (e) => K(e) === 'aio-ring', verdict: 'data', why: 'an aio completion ring (io_setup): every page exists, written by the kernel; read through the mapping (which maps them, allocating nothing)' },
  // Another kernel object's memory (io_uring rings, perf buffers, BPF maps): what is mapped is read like any page;
  // a page not mapped would have to be made by the object's own fault handler, which a dump must not run.
  { case: 'X5', name: 'kernel object page, mapped', when: all((e) => K(e) === 'kernel-object', pte('file', 'data', 'zero')), verdict: 'data', why: 'the memory of a kernel object (an io_uring\'s rings, a perf event\'s buffer, a BPF map) mapped here: read through the mapping' },
  { case: 'X5', name: 'kernel object page, not mapped', when: (e) => K(e) === 'kernel-object', verdict: 'unreadable', why: 'a kernel object\'s page this process has not mapped: only the object\'s fault handler could make it, and a dump does not run it' },

  // A mapping of an object registered with userfaultfd (missing mode) where the object holds no page: as X3 below.
  { case: 'X3', name: 'hole in userfaultfd-missing shmem', when: all((e) => objectKind(e) || privateObject(e), pte('none'), (e) => flag(e, 'um'), (e) => e.object?.data === false && e.object.cached !== true), verdict: 'unreadable', why: UFFD_HOLE },

  // Shared objects: whatever this page table shows, the object holds the data (S1-S7, H2); markers are the mapping's.
  { case: 'A16', name: 'guard marker over shmem/file', when: all(objectKind, pte('guard')), verdict: 'guard', why: 'the guard replaced only the pte: the object still holds the data, stored with the object' },
  { case: 'A18', name: 'uffd-wp marker over shmem', when: all(objectKind, pte('uffd-wp-marker')), verdict: 'object', why: 'the marker hides whether the data is in the page cache, in swap or nowhere: the object says' },
  { case: 'A10', name: 'migration entry in a shared mapping', when: all(objectKind, pte('migration')), verdict: 'object', why: 'the page is in RAM, moving: the object holds it' },
  { case: 'H2', name: 'hugetlb shared', when: (e) => K(e) === 'hugetlb' && e.region.shared, verdict: 'object', why: 'hugetlbfs page cache (mincore cannot see it; SEEK_DATA can)' },
  { case: 'S7', name: 'shmem THP mapped', when: all(objectKind, pte('file'), (e) => e.huge === true), verdict: 'object', why: 'page cache, PMD-mapped' },
  { case: 'S4', name: 'shmem read-fault on a hole', when: all(objectKind, pte('file'), (e) => e.zeroContent === true), verdict: 'object', why: 'the read allocated a zero page in the page cache: the object has (zero) data there' },
  { case: 'S1', name: 'shmem page mapped', when: all(objectKind, pte('file', 'data', 'zero')), verdict: 'object', why: 'page cache, mapped here; stored once with the object' },
  { case: 'S3', name: 'shmem swapped out', when: (e) => objectKind(e) && e.object?.data === true && e.object.resident === false, verdict: 'object', why: 'in swap, referenced from the object: shmem never has swap ptes, pagemap shows nothing' },
  { case: 'S2', name: 'shmem in page cache, pte none', when: (e) => objectKind(e) && e.object?.data === true, verdict: 'object', why: 'in the page cache but not mapped here (zapped, written another way, or a fork child): pagemap shows nothing' },
  { case: 'S5', name: 'shmem fallocated, never written', when: (e) => objectKind(e) && e.object?.data === false && e.object.cached === true, verdict: 'object', why: 'an allocated page that was never written: reads as zero, SEEK_DATA calls it a hole' },
  { case: 'S6', name: 'shmem hole or punched', when: (e) => objectKind(e) && e.object?.data === false, verdict: 'object', why: 'nothing in the object: reads as zero' },
  // Without object evidence a shared page without a pte could be S2, S3 or a hole: the object decides.
  { case: 'S2', name: 'shmem, pte none, object not inspected', when: objectKind, verdict: 'object', why: 'pagemap cannot tell: the object holds whatever data there is' },

  // Shared file mappings: the file holds the data; once it is deleted, only the mappings reach it.
  { case: 'A16', name: 'guard marker over a shared file', when: all((e) => K(e) === 'file-shared', pte('guard')), verdict: 'guard', why: 'the file still holds the data' },
  { case: 'F2', name: 'shared page of a deleted file, mapped', when: all(goneShared, pte('file', 'data')), verdict: 'object', why: 'page cache of a file with no name: stored with the file, as an object' },
  { case: 'F1', name: 'shared page of a deleted file, not mapped', when: goneShared, verdict: 'object', why: 'in a file with no name, which only its mappings reach: stored with the file, as an object' },
  { case: 'F2', name: 'shared file page mapped', when: all((e) => K(e) === 'file-shared', pte('file', 'data')), verdict: fileOrData, why: 'page cache of the file' },
  { case: 'F1', name: 'shared file page not mapped', when: (e) => K(e) === 'file-shared', verdict: 'file', why: 'in the file' },

  // A hole that userfaultfd (missing mode) fills: a touch asks the process's handler, so it need not read as zero.
  { case: 'X3', name: 'hole in userfaultfd-missing memory', when: all((e) => anonKind(e) || (K(e) === 'hugetlb' && !e.region.shared), pte('none'), (e) => flag(e, 'um')), verdict: 'unreadable', why: UFFD_HOLE },

  // Markers and special entries mean the same in all private memory.
  { case: 'A15', name: 'guard marker, private', when: all(privateKind, pte('guard')), verdict: 'guard', why: 'installing the guard dropped the data; access faults' },
  { case: 'A14', name: 'uffd poison marker', when: all(privateKind, pte('poison-marker')), verdict: 'poison', why: 'no data; access gives SIGBUS' },
  { case: 'A13', name: 'hwpoisoned page', when: all(privateKind, pte('hwpoison')), verdict: 'poison', why: 'the data is lost' },
  { case: 'A17', name: 'uffd-wp marker over a hole', when: all(privateKind, pte('uffd-wp-marker')), verdict: 'hole', why: 'a marker, no data: reads as zero' },
  { case: 'A10', name: 'migration entry', when: all(privateKind, pte('migration')), verdict: 'retry', why: 'the page is in RAM, moving: look again, then read' },
  { case: 'A12', name: 'device-exclusive entry', when: all(privateKind, pte('device'), (e) => e.deviceExclusive === true), verdict: 'data', why: 'in RAM; a CPU read revokes the device\'s exclusivity' },
  { case: 'A11', name: 'device-private entry', when: all(privateKind, pte('device')), verdict: 'data', why: 'in device memory; a CPU read migrates it back' },
  { case: 'H3', name: 'hugetlb entry pagemap hides', when: all((e) => K(e) === 'hugetlb', pte('swap-unknown')), verdict: 'retry', why: 'pagemap hides hugetlb poison and migration entries: look again, then read (poison fails the read)' },
  { case: 'P1', name: 'swap-like entry, type hidden (no CAP_SYS_ADMIN)', when: all(privateKind, pte('swap-unknown')), verdict: 'data', why: 'swap, migration or poison cannot be told apart without CAP_SYS_ADMIN: reading decides' },

  // Private hugetlb.
  { case: 'H1', name: 'hugetlb present', when: all((e) => K(e) === 'hugetlb', pte('data')), verdict: 'data', why: 'RAM (hugetlb is never swapped)' },
  { case: 'H1', name: 'hugetlb page cache page, private mapping', when: all((e) => K(e) === 'hugetlb', pte('file')), verdict: fileOrData, why: 'the hugetlbfs file\'s page' },
  { case: 'H1', name: 'hugetlb swap-like entry', when: all((e) => K(e) === 'hugetlb', pte('swap')), verdict: 'data', why: 'hugetlb is never swapped, so pagemap cannot be right here: read it' },
  { case: 'A2', name: 'hugetlb zero page', when: all((e) => K(e) === 'hugetlb', pte('zero')), verdict: 'zero', why: 'reads as zero' },
  { case: 'A1', name: 'hugetlb page never touched', when: all((e) => K(e) === 'hugetlb', pte('none')), verdict: 'hole', why: 'nothing there: reads as zero' },

  // Private file mappings.
  { case: 'F4', name: 'private file page, copied on write, swapped', when: all((e) => K(e) === 'file-private', pte('swap')), verdict: 'data', why: 'in swap: a real swap entry in a private file mapping is always an anonymous copy' },
  { case: 'F3', name: 'private file page, copied on write', when: all((e) => K(e) === 'file-private', pte('data')), verdict: 'data', why: 'a private anonymous copy: only this process has it' },
  // A private mapping of shmem (a memfd, a tmpfs file) or of a deleted file: its clean pages are the object's, and
  // the object dies with its last user (a memfd always does), so they are stored with it, not left to a file.
  { case: 'F6', name: 'private shmem read-fault on a hole', when: all(privateObject, pte('file'), (e) => e.zeroContent === true), verdict: 'object', why: 'the read gave the object a zero page: it belongs to the object' },
  { case: 'F2', name: 'private shmem or deleted-file page, clean', when: all(privateObject, pte('file')), verdict: 'object', why: 'the object\'s page (gone with its last user): stored with the object' },
  { case: 'F1', name: 'private shmem or deleted-file page untouched', when: all(privateObject, pte('none')), verdict: 'object', why: 'whatever the object holds there: stored with the object' },
  { case: 'F2', name: 'private file page, clean', when: all((e) => K(e) === 'file-private', pte('file')), verdict: fileOrData, why: 'page cache of the file; follows later writes to the file' },
  { case: 'F5', name: 'private file page reclaimed', when: all((e) => K(e) === 'file-private', pte('none'), (e) => e.object?.resident === false), verdict: 'file', why: 'in the file (reclaimed from the page cache)' },
  { case: 'F1', name: 'private file page untouched', when: all((e) => K(e) === 'file-private', pte('none')), verdict: 'file', why: 'in the file' },

  // Anonymous memory.
  { case: 'K2', name: 'KSM merged with the zero page', when: all(anonKind, pte('zero'), (e) => flag(e, 'mg')), verdict: 'zero', why: 'KSM use_zero_pages mapped the zero page' },
  { case: 'A7', name: 'huge zero page', when: all((e) => anonKind(e) || K(e) === 'file-private', pte('zero'), (e) => e.huge === true), verdict: 'zero', why: 'the huge zero page (pagemap says PM_FILE; PAGEMAP_SCAN says PFNZERO)' },
  { case: 'A7', name: 'huge zero page (PM_FILE in anonymous memory)', when: all(anonKind, pte('file')), verdict: 'zero', why: 'a non-anonymous page in anonymous memory is the huge zero page' },
  { case: 'A2', name: 'zero page', when: all((e) => anonKind(e) || K(e) === 'file-private', pte('zero')), verdict: 'zero', why: 'the shared zero page: reads as zero' },
  { case: 'A4', name: 'anonymous page swapped out', when: all(anonKind, pte('swap')), verdict: 'data', why: 'in swap (reading swaps it in)' },
  { case: 'K1', name: 'KSM merged page', when: all(anonKind, pte('data'), (e) => e.kpf?.ksm === true), verdict: 'data', why: 'RAM, shared by KSM with identical pages' },
  { case: 'A5', name: 'anonymous page shared after fork', when: all(anonKind, pte('data'), (e) => e.exclusive === false), verdict: 'data', why: 'RAM, shared copy-on-write with another process' },
  { case: 'A6', name: 'lazily freed (MADV_FREE)', when: all(anonKind, pte('data'), (e) => e.kpf?.swapBacked === false), verdict: 'data', why: 'RAM until reclaimed, then zero: the application declared it disposable' },
  { case: 'A8', name: 'PMD-mapped THP', when: all(anonKind, pte('data'), (e) => e.huge === true), verdict: 'data', why: 'RAM, a huge page' },
  { case: 'A19', name: 'uffd-wp protected data', when: all(anonKind, pte('data'), (e) => e.uffdWp === true), verdict: 'data', why: 'RAM, write-protected by userfaultfd' },
  { case: 'P2', name: 'PROT_NONE data', when: all(anonKind, pte('data'), (e) => e.region.readable === false), verdict: 'data', why: 'RAM; process_vm_readv refuses it, /proc/PID/mem reads it' },
  { case: 'P3', name: 'mlocked data', when: all(anonKind, pte('data'), (e) => flag(e, 'lo')), verdict: 'data', why: 'RAM, locked' },
  { case: 'A3', name: 'anonymous page written', when: all(anonKind, pte('data')), verdict: 'data', why: 'RAM' },
  { case: 'P5', name: 'WIPEONFORK region, nothing mapped', when: all(anonKind, pte('none'), (e) => flag(e, 'wf')), verdict: 'hole', why: 'wiped in a fork child: reads as zero' },
  { case: 'A1', name: 'anonymous page never touched', when: all(anonKind, pte('none')), verdict: 'hole', why: 'nothing there: reads as zero' },
];

/**
 * Cases with no rule of their own, because no evidence tells them from another case; what decides them instead.
 */
export const ALIASES: Readonly<Partial<Record<CaseId, { as: CaseId; why: string }>>> = {
  A9: { as: 'A4', why: 'a swapped-out THP is 512 ordinary swap entries' },
  F7: { as: 'F2', why: 'a COW page dropped by MADV_DONTNEED reads the file again: a clean file page' },
  P4: { as: 'A1', why: 'a DONTFORK region is absent in the fork child: it has no pages at all' },
  R1: { as: 'A10', why: 'pagemap races are handled by freezing the target and looking again at transient entries' },
};

export interface Decision {
  verdict: Verdict;
  case: CaseId;
  rule: Rule;
}

/** The first rule that matches. Every combination of region kind and page state has one (tested). */
export function decideFrom(e: Evidence): Decision {
  for (const rule of RULES) {
    if (rule.when(e)) return { verdict: typeof rule.verdict === 'function' ? rule.verdict(e) : rule.verdict, case: rule.case, rule };
  }
  throw new Error(`no rule for ${e.region.kind} ${e.region.shared ? 'shared' : 'private'} page in state ${e.pte}`);
}
