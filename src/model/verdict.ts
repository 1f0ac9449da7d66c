/**
 * The inaccuracy model's decision: for a page in a region of some kind, in the state its page table entry shows,
 * what must a snapshot do with it, and which case of kernel-semantics.md §2 says so. The dump asks this and
 * nothing else.
 */
import type { PageState, RegionKind } from '../proc/index.js';

/**
 * - data: holds data only this process has: read it and store it;
 * - zero: reads as zero (shared zero page, or the content read back was all zero): recorded, not stored;
 * - hole: nothing there, reads as zero: recorded, not stored;
 * - file: a clean page of the mapped file: the file holds it, recorded, not stored (unless asked);
 * - object: a shmem mapping: the content is the shmem object's, stored once per object;
 * - guard / poison: a marker: recorded, restored as a marker, no content;
 * - retry: a transient entry (migration): look again, then read;
 * - special: a region that is never read (vvar, vdso, PFNMAP/IO);
 * - unreadable: reading failed; the reason is recorded with the run.
 */
export type Verdict = 'data' | 'zero' | 'hole' | 'file' | 'object' | 'guard' | 'poison' | 'retry' | 'special' | 'unreadable';

/** Case ids of kernel-semantics.md §2.1, plus X1 for regions pagesnap never reads. */
export type CaseId =
  | 'A1' | 'A2' | 'A3' | 'A4' | 'A7' | 'A10' | 'A11' | 'A13' | 'A14' | 'A15' | 'A16' | 'A17' | 'A18' | 'A19'
  | 'S1' | 'S2' | 'S6' | 'F1' | 'F2' | 'F3' | 'F4' | 'H1' | 'H2' | 'H3' | 'P1' | 'X1';

export interface Decision {
  verdict: Verdict;
  case: CaseId;
}

export interface DecideOptions {
  /** Store clean file pages too (`--include-file-pages`). */
  includeFilePages?: boolean;
}

const d = (verdict: Verdict, c: CaseId): Decision => ({ verdict, case: c });

/** Markers and special entries mean the same in every kind of private memory. */
function privateMarker(state: PageState | 'none'): Decision | null {
  switch (state) {
    case 'guard': return d('guard', 'A15');
    case 'poison-marker': return d('poison', 'A14');
    case 'hwpoison': return d('poison', 'A13');
    case 'uffd-wp-marker': return d('hole', 'A17');
    case 'migration': return d('retry', 'A10');
    case 'device': return d('data', 'A11');
    // Without CAP_SYS_ADMIN a swap-like entry could be swap, migration or poison: read it; a failed read is
    // recorded as unreadable (poison gives EIO/EFAULT).
    case 'swap-unknown': return d('data', 'P1');
    default: return null;
  }
}

/** What decides a page: the region's kind and whether it is a shared mapping ('s' in maps). */
export interface RegionShape {
  kind: RegionKind;
  shared: boolean;
}

export function decide(r: RegionShape, state: PageState | 'none', opts: DecideOptions = {}): Decision {
  if (r.kind === 'special' || r.kind === 'vvar' || r.kind === 'vsyscall' || r.kind === 'vdso') return d('special', 'X1');

  // Shared shmem and shared hugetlb: the object holds the data whatever this page table shows (S1-S3, H2);
  // only markers are the mapping's own.
  if (r.kind === 'shmem-shared' || (r.kind === 'hugetlb' && r.shared)) {
    const own: CaseId = r.kind === 'hugetlb' ? 'H2' : state === 'none' ? 'S2' : 'S1';
    if (state === 'guard') return d('guard', 'A16');
    if (state === 'uffd-wp-marker') return d('object', 'A18');
    if (state === 'migration') return d('object', 'A10');
    return d('object', own);
  }

  if (r.kind === 'file-shared') {
    if (state === 'guard') return d('guard', 'A16');
    const inFile = state === 'none' ? d('file', 'F1') : d('file', 'F2');
    return opts.includeFilePages && state === 'file' ? d('data', 'F2') : inFile;
  }

  const marker = privateMarker(state);
  if (marker) return marker;

  if (r.kind === 'hugetlb') {
    switch (state) {
      case 'data': return d('data', 'H1');
      case 'file': return opts.includeFilePages ? d('data', 'H1') : d('file', 'H1');
      case 'zero': return d('zero', 'A2');
      default: return d('hole', 'A1');
    }
  }

  if (r.kind === 'file-private') {
    switch (state) {
      case 'data': return d('data', 'F3');
      case 'swap': return d('data', 'F4');
      case 'file': return opts.includeFilePages ? d('data', 'F2') : d('file', 'F2');
      case 'zero': return d('zero', 'A2');
      default: return d('file', 'F1');
    }
  }

  // anon-private, heap, stack
  switch (state) {
    case 'data': return d('data', 'A3');
    case 'swap': return d('data', 'A4');
    case 'zero': return d('zero', 'A2');
    // a present non-anon page in anonymous memory is the huge zero page (A7); decodeEntry already says zero
    case 'file': return d('zero', 'A7');
    default: return d('hole', 'A1');
  }
}
